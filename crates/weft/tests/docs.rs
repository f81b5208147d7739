//! The documentation's relative links lead to files of this repository:
//! every `[text](target)` and `[label]: target` in README.md, CHANGELOG.md
//! and docs/*.md that is not a URL must name a file or directory that
//! exists inside the repository, so a fresh clone has no dead links and
//! none that only work on the machine where they were written.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Component, Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The Markdown files whose links are checked.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The link targets in `text` with their line numbers, outside fenced code
/// blocks and code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = without_code_spans(line);
        // Reference definitions: `[label]: target`.
        if let Some(rest) = line.trim_start().strip_prefix('[')
            && let Some((_, target)) = rest.split_once("]:")
        {
            if let Some(target) = target.split_whitespace().next() {
                found.push((index + 1, target.trim_matches(['<', '>']).to_owned()));
            }
            continue;
        }
        // Inline links and images: `](target)` or `](target "title")`.
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            if let Some(target) = rest[..end].split_whitespace().next() {
                found.push((index + 1, target.trim_matches(['<', '>']).to_owned()));
            }
            rest = &rest[end..];
        }
    }
    found
}

fn without_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_external(target: &str) -> bool {
    target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:")
        || target.is_empty()
}

/// `path` with `.` and `..` resolved lexically (the target may not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Why `target`, written in `document`, is not a file of the repository.
fn check(root: &Path, document: &Path, target: &str) -> Option<String> {
    let file = target.split('#').next().unwrap_or(target);
    let file = file.split('?').next().unwrap_or(file);
    let resolved = if let Some(absolute) = file.strip_prefix('/') {
        root.join(absolute)
    } else {
        document.parent().unwrap().join(file)
    };
    let resolved = normalise(&resolved);
    if !resolved.starts_with(root) {
        return Some(format!(
            "leads outside the repository ({})",
            resolved.display()
        ));
    }
    if !resolved.exists() {
        return Some(format!("{} does not exist", resolved.display()));
    }
    None
}

#[test]
fn every_relative_link_in_the_docs_resolves_inside_the_repository() {
    let root = repository();
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document)
            .unwrap_or_else(|e| panic!("{}: {e}", document.display()));
        for (line, target) in links(&text) {
            if is_external(&target) {
                continue;
            }
            checked += 1;
            if let Some(why) = check(&root, &document, &target) {
                broken.push(format!(
                    "{}:{line}: ({target}) {why}",
                    document.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // README links to docs/ and LICENSE files at least: the parser found them.
    assert!(checked >= 5, "only {checked} relative links found");
}

#[test]
fn the_link_finder_sees_inline_and_reference_links_but_not_code() {
    let text = "See [a](docs/A.md#x) and ![img](b.png \"t\").\n\
                [ref]: ../outside.md\n\
                `[not](code.md)`\n\
                ```\n[not](fenced.md)\n```\n";
    let targets: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["docs/A.md#x", "b.png", "../outside.md"]);
    let root = repository();
    let readme = root.join("README.md");
    assert!(check(&root, &readme, "../outside.md").is_some());
    assert!(check(&root, &readme, "docs/PROTOCOL.md#3-handshake-packets").is_none());
}
