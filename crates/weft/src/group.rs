//! `weft group join|leave|list|tree`: multicast groups of a running node.
//!
//! A group is its multicast address. `join` and `leave` make the node a
//! member or not (as a local application's IGMP/MLD report on the TUN
//! does), `list` shows every group the node knows of with its members, and
//! `tree` shows the distribution tree packets from a source to a group take
//! now, as the asked node computes it from its own link-state view (every
//! node computes the same one from the same view).
//!
//! [`GroupInfo`], [`MemberInfo`] and [`TreeInfo`] are the `groups` and
//! `tree` objects of the control protocol (see `daemon::control`): the
//! daemon builds them from the core's group and tree status, this module
//! and the tests read them back. Talking to the daemon goes through
//! `status::request`, so every command shares its timeouts and its "is the
//! daemon running?" error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use weft_core::{GroupStatus, TreeStatus};

use crate::config::parse_group;
use crate::status::{ControlArgs, emit, render_columns, request};

/// `weft group ...`.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// Make the node a member of GROUP (a multicast address such as
    /// 239.1.2.3 or ff0e::1:2:3).
    Join(GroupArgs),
    /// End the node's own membership of GROUP (applications on the node
    /// that joined it through their sockets join it again with their next
    /// report).
    Leave(GroupArgs),
    /// Every group the node knows of, with its members.
    List(ListArgs),
    /// The distribution tree from a source to GROUP, as this node computes
    /// it now.
    Tree(TreeArgs),
}

/// Arguments of `weft group join` and `weft group leave`.
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    /// The group: a multicast address.
    pub group: String,
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
}

/// Arguments of `weft group list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print JSON (the daemon's `groups` array) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `weft group tree`.
#[derive(clap::Args, Debug)]
pub struct TreeArgs {
    /// The group: a multicast address.
    pub group: String,
    /// The source node (name or hex node id); default: the asked node.
    #[arg(long)]
    pub source: Option<String>,
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print JSON (the daemon's `tree` object) instead of a drawing.
    #[arg(long)]
    pub json: bool,
}

/// One group as the control protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group's multicast address.
    pub group: IpAddr,
    /// Whether the asked node itself is a member.
    pub joined: bool,
    /// Every member the node knows of (itself included when joined),
    /// sorted by name.
    pub members: Vec<MemberInfo>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its certificate name.
    pub name: String,
    /// Its node id (hex).
    pub node_id: String,
}

/// A distribution tree as the control protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeInfo {
    /// The group's multicast address.
    pub group: IpAddr,
    /// The source node's name (the tree's root).
    pub source: String,
    /// Parent–child pairs of node names.
    pub edges: Vec<(String, String)>,
    /// The group's members (names).
    pub members: Vec<String>,
    /// Members the tree cannot reach from the source (no known path).
    pub unreached: Vec<String>,
}

/// The `multicast` object of the node status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MulticastInfo {
    /// Groups this node is a member of.
    pub joined: Vec<IpAddr>,
    /// Groups with members that this node knows of.
    pub groups: usize,
    /// The tree fan-out bound this node uses.
    pub fanout: usize,
}

impl GroupInfo {
    /// The control protocol's form of the core's group status.
    pub fn from_core(status: &GroupStatus) -> Self {
        let mut members: Vec<MemberInfo> = status
            .members
            .iter()
            .map(|(id, name)| MemberInfo {
                name: name.clone(),
                node_id: id.to_string(),
            })
            .collect();
        members.sort_by(|a, b| (&a.name, &a.node_id).cmp(&(&b.name, &b.node_id)));
        members.dedup();
        GroupInfo {
            group: status.group,
            joined: status.joined,
            members,
        }
    }
}

impl TreeInfo {
    /// The control protocol's form of the core's tree status.
    pub fn from_core(status: &TreeStatus) -> Self {
        TreeInfo {
            group: status.group,
            source: status.source.clone(),
            edges: status.edges.clone(),
            members: status.members.clone(),
            unreached: status.unreached.clone(),
        }
    }
}

/// Runs `weft group ...`.
pub fn run(command: &GroupCommand) -> anyhow::Result<ExitCode> {
    match command {
        GroupCommand::Join(args) => {
            let group = parse_group(&args.group).map_err(anyhow::Error::msg)?;
            join(&args.target.socket()?, group)?;
            emit(&format!("joined {group}\n"))?;
        }
        GroupCommand::Leave(args) => {
            let group = parse_group(&args.group).map_err(anyhow::Error::msg)?;
            leave(&args.target.socket()?, group)?;
            emit(&format!("left {group}\n"))?;
        }
        GroupCommand::List(args) => {
            let socket = args.target.socket()?;
            if args.json {
                let response = request(&socket, &serde_json::json!({ "command": "groups" }))?;
                let groups = response
                    .get("groups")
                    .context("the daemon's answer has no groups")?;
                emit(&format!("{}\n", serde_json::to_string_pretty(groups)?))?;
            } else {
                emit(&render_groups(&groups(&socket)?))?;
            }
        }
        GroupCommand::Tree(args) => {
            let group = parse_group(&args.group).map_err(anyhow::Error::msg)?;
            let socket = args.target.socket()?;
            if args.json {
                let response = request(&socket, &tree_request(group, args.source.as_deref()))?;
                let tree = response
                    .get("tree")
                    .context("the daemon's answer has no tree")?;
                emit(&format!("{}\n", serde_json::to_string_pretty(tree)?))?;
            } else {
                emit(&render_tree(&tree(&socket, group, args.source.as_deref())?))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the node at `socket` to join `group`.
pub fn join(socket: &Path, group: IpAddr) -> anyhow::Result<()> {
    request(
        socket,
        &serde_json::json!({ "command": "group_join", "group": group.to_string() }),
    )
    .map(drop)
}

/// Asks the node at `socket` to leave `group`.
pub fn leave(socket: &Path, group: IpAddr) -> anyhow::Result<()> {
    request(
        socket,
        &serde_json::json!({ "command": "group_leave", "group": group.to_string() }),
    )
    .map(drop)
}

/// The groups the node at `socket` knows of.
pub fn groups(socket: &Path) -> anyhow::Result<Vec<GroupInfo>> {
    let response = request(socket, &serde_json::json!({ "command": "groups" }))?;
    let groups = response
        .get("groups")
        .cloned()
        .context("the daemon's answer has no groups")?;
    serde_json::from_value(groups).context("the daemon's groups are not in the expected form")
}

/// The tree from `source` (default: the asked node) to `group`, as the
/// node at `socket` computes it.
pub fn tree(socket: &Path, group: IpAddr, source: Option<&str>) -> anyhow::Result<TreeInfo> {
    let response = request(socket, &tree_request(group, source))?;
    let tree = response
        .get("tree")
        .cloned()
        .context("the daemon's answer has no tree")?;
    serde_json::from_value(tree).context("the daemon's tree is not in the expected form")
}

/// The control request for a tree.
pub fn tree_request(group: IpAddr, source: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "command": "tree", "group": group.to_string(), "source": source })
}

/// The groups as `weft group list` prints them.
pub fn render_groups(groups: &[GroupInfo]) -> String {
    if groups.is_empty() {
        return "no groups\n".to_owned();
    }
    let header = ["GROUP", "JOINED", "MEMBERS"].map(String::from);
    let rows: Vec<[String; 3]> = groups
        .iter()
        .map(|g| {
            let names: Vec<&str> = g.members.iter().map(|m| m.name.as_str()).collect();
            let members = if names.is_empty() {
                "-".to_owned()
            } else {
                format!("{} ({})", names.join(", "), names.len())
            };
            [
                g.group.to_string(),
                if g.joined { "yes" } else { "no" }.to_owned(),
                members,
            ]
        })
        .collect();
    render_columns(&header, &rows)
}

/// The tree as `weft group tree` draws it: a summary line, then the nodes
/// from the source down, members marked `*`, then unreached members.
pub fn render_tree(tree: &TreeInfo) -> String {
    let members: BTreeSet<&str> = tree.members.iter().map(String::as_str).collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (parent, child) in &tree.edges {
        children.entry(parent).or_default().push(child);
    }
    let mut out = format!(
        "group {}  source {}  {} members, {} edges{}\n",
        tree.group,
        tree.source,
        tree.members.len(),
        tree.edges.len(),
        if tree.unreached.is_empty() {
            String::new()
        } else {
            format!(", {} unreached", tree.unreached.len())
        }
    );
    let mark = |name: &str| if members.contains(name) { " *" } else { "" };
    out.push_str(&format!("{}{}\n", tree.source, mark(&tree.source)));
    // Depth-first from the source; `visited` guards against a malformed
    // answer with a cycle.
    let mut visited: BTreeSet<&str> = BTreeSet::from([tree.source.as_str()]);
    let mut stack: Vec<(&str, String, bool)> = Vec::new();
    fn push_children<'a>(
        stack: &mut Vec<(&'a str, String, bool)>,
        children: &BTreeMap<&'a str, Vec<&'a str>>,
        node: &str,
        prefix: &str,
    ) {
        if let Some(kids) = children.get(node) {
            for (i, kid) in kids.iter().enumerate().rev() {
                stack.push((kid, prefix.to_owned(), i + 1 == kids.len()));
            }
        }
    }
    push_children(&mut stack, &children, &tree.source, "");
    while let Some((node, prefix, last)) = stack.pop() {
        if !visited.insert(node) {
            continue;
        }
        let branch = if last { "└── " } else { "├── " };
        out.push_str(&format!("{prefix}{branch}{node}{}\n", mark(node)));
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        push_children(&mut stack, &children, node, &deeper);
    }
    if !tree.unreached.is_empty() {
        out.push_str(&format!("unreached: {}\n", tree.unreached.join(", ")));
    }
    out.push_str("(* member)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_info() -> TreeInfo {
        let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        TreeInfo {
            group: "239.1.2.3".parse().unwrap(),
            source: "h0".into(),
            edges: vec![
                edge("h0", "h1"),
                edge("h1", "h3"),
                edge("h0", "h2"),
                edge("h1", "h4"),
            ],
            members: vec!["h2".into(), "h3".into(), "h4".into(), "h5".into()],
            unreached: vec!["h5".into()],
        }
    }

    #[test]
    fn tree_is_drawn_from_the_source_with_members_marked() {
        let text = render_tree(&tree_info());
        assert_eq!(
            text,
            "group 239.1.2.3  source h0  4 members, 4 edges, 1 unreached\n\
             h0\n\
             ├── h1\n\
             │   ├── h3 *\n\
             │   └── h4 *\n\
             └── h2 *\n\
             unreached: h5\n\
             (* member)\n"
        );
    }

    #[test]
    fn a_cycle_in_a_malformed_tree_does_not_loop() {
        let mut tree = tree_info();
        tree.edges.push(("h3".into(), "h0".into()));
        tree.edges.push(("h3".into(), "h1".into()));
        let text = render_tree(&tree);
        assert_eq!(text.matches("h1").count(), 1, "{text}");
    }

    #[test]
    fn groups_table_lists_members() {
        let groups = vec![
            GroupInfo {
                group: "239.1.2.3".parse().unwrap(),
                joined: true,
                members: vec![
                    MemberInfo {
                        name: "a".into(),
                        node_id: "00".repeat(32),
                    },
                    MemberInfo {
                        name: "b".into(),
                        node_id: "11".repeat(32),
                    },
                ],
            },
            GroupInfo {
                group: "ff0e::1".parse().unwrap(),
                joined: false,
                members: vec![],
            },
        ];
        let text = render_groups(&groups);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "GROUP      JOINED  MEMBERS");
        assert_eq!(lines[1], "239.1.2.3  yes     a, b (2)");
        assert_eq!(lines[2], "ff0e::1    no      -");
        assert_eq!(render_groups(&[]), "no groups\n");
    }

    #[test]
    fn control_objects_have_the_documented_shape() {
        let json = serde_json::to_value(tree_info()).unwrap();
        assert_eq!(json["edges"][0], serde_json::json!(["h0", "h1"]));
        assert_eq!(json["group"], "239.1.2.3");
        assert_eq!(
            serde_json::from_value::<TreeInfo>(json).unwrap(),
            tree_info()
        );
        let request = tree_request("ff0e::1".parse().unwrap(), None);
        assert_eq!(
            request,
            serde_json::json!({"command": "tree", "group": "ff0e::1", "source": null})
        );
    }
}
