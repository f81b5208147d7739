// The weft network map: draws the node's view of the overlay as SVG.
//
// Data: polls /api/v1/topology, /api/v1/peers and /api/v1/groups every
// second (plus the chosen destination's route and the chosen group's tree)
// and follows /api/v1/events (Server-Sent Events) for the timeline; an
// event about paths or links triggers a refresh at once. Layout: a small
// Fruchterman-Reingold force layout, seeded on a circle in name order and
// moved a little per refresh, so the picture is stable while it stays live.
// Links are undirected on the map: a link is down if either end says so,
// or if it was seen before and no one reports it any more. No third-party
// code; plain DOM and SVG.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 800;
  const HEIGHT = 560;
  const REFRESH_MS = 1000;
  const MAX_EVENTS = 100;

  const state = {
    thisNode: "",
    nodes: new Map(), // name -> {x, y, vx, vy, info}
    links: new Map(), // "a|b" -> {a, b, rtt, loss, state}
    peers: [],
    groups: [],
    route: null, // names from this node to the destination
    tree: null, // {edges, members, source}
    refreshing: false,
    refreshes: 0,
  };
  window.weftMap = state;

  const $ = (id) => document.getElementById(id);

  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store" });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        message = (await response.json()).error || message;
      } catch (_) {
        /* not JSON */
      }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function linkKey(a, b) {
    return a < b ? a + "|" + b : b + "|" + a;
  }

  // Merges the directed links of the topology into undirected ones.
  function updateTopology(topology) {
    state.thisNode = topology.this_node;
    $("node-name").textContent = topology.this_node;
    const names = topology.nodes.map((n) => n.name).sort();
    names.forEach((name, i) => {
      if (!state.nodes.has(name)) {
        const angle = (2 * Math.PI * i) / Math.max(names.length, 1);
        state.nodes.set(name, {
          x: WIDTH / 2 + (WIDTH / 3) * Math.cos(angle),
          y: HEIGHT / 2 + (HEIGHT / 3) * Math.sin(angle),
          vx: 0,
          vy: 0,
          info: null,
        });
      }
    });
    for (const n of topology.nodes) {
      state.nodes.get(n.name).info = n;
    }
    const current = new Map();
    for (const l of topology.links) {
      if (l.from === l.to) continue;
      const key = linkKey(l.from, l.to);
      const merged = current.get(key) || {
        a: l.from < l.to ? l.from : l.to,
        b: l.from < l.to ? l.to : l.from,
        rtt: null,
        loss: 0,
        state: "up",
      };
      if (l.rtt_ms !== null && l.rtt_ms !== undefined) {
        merged.rtt = merged.rtt === null ? l.rtt_ms : Math.max(merged.rtt, l.rtt_ms);
      }
      merged.loss = Math.max(merged.loss, l.loss || 0);
      if (l.state === "down") merged.state = "down";
      current.set(key, merged);
    }
    // A link seen before that nobody reports now is down.
    for (const [key, old] of state.links) {
      if (!current.has(key)) {
        current.set(key, Object.assign({}, old, { state: "down" }));
      }
    }
    state.links = current;
  }

  // A few steps of Fruchterman-Reingold; the first refresh runs more.
  function layout(steps) {
    const nodes = [...state.nodes.entries()].sort((p, q) => (p[0] < q[0] ? -1 : 1));
    const n = nodes.length;
    if (n < 2) {
      for (const [, node] of nodes) {
        node.x = WIDTH / 2;
        node.y = HEIGHT / 2;
      }
      return;
    }
    const k = 0.8 * Math.sqrt((WIDTH * HEIGHT) / n);
    let temperature = WIDTH / 10;
    for (let step = 0; step < steps; step++) {
      for (const [, node] of nodes) {
        node.vx = 0;
        node.vy = 0;
      }
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const a = nodes[i][1];
          const b = nodes[j][1];
          let dx = a.x - b.x;
          let dy = a.y - b.y;
          let d = Math.hypot(dx, dy);
          if (d < 0.01) {
            dx = 0.01 * (i - j);
            dy = 0.01;
            d = Math.hypot(dx, dy);
          }
          const force = (k * k) / d;
          a.vx += (dx / d) * force;
          a.vy += (dy / d) * force;
          b.vx -= (dx / d) * force;
          b.vy -= (dy / d) * force;
        }
      }
      for (const link of state.links.values()) {
        const a = state.nodes.get(link.a);
        const b = state.nodes.get(link.b);
        if (!a || !b) continue;
        const dx = a.x - b.x;
        const dy = a.y - b.y;
        const d = Math.max(Math.hypot(dx, dy), 0.01);
        const force = (d * d) / k;
        a.vx -= (dx / d) * force;
        a.vy -= (dy / d) * force;
        b.vx += (dx / d) * force;
        b.vy += (dy / d) * force;
      }
      for (const [, node] of nodes) {
        const v = Math.hypot(node.vx, node.vy);
        if (v > 0) {
          node.x += (node.vx / v) * Math.min(v, temperature);
          node.y += (node.vy / v) * Math.min(v, temperature);
        }
        node.x = Math.min(WIDTH - 40, Math.max(40, node.x));
        node.y = Math.min(HEIGHT - 40, Math.max(40, node.y));
      }
      temperature = Math.max(temperature * 0.95, 2);
    }
  }

  function latencyClass(link) {
    if (link.loss >= 0.05) return "lat-bad";
    if (link.rtt === null) return "lat-ok";
    if (link.rtt < 5) return "lat-good";
    if (link.rtt < 50) return "lat-ok";
    if (link.rtt < 150) return "lat-slow";
    return "lat-bad";
  }

  function element(name, attributes) {
    const e = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) {
      e.setAttribute(key, value);
    }
    return e;
  }

  function pathLinks() {
    const keys = new Set();
    if (!state.route) return keys;
    for (let i = 0; i + 1 < state.route.length; i++) {
      keys.add(linkKey(state.route[i], state.route[i + 1]));
    }
    return keys;
  }

  function draw() {
    const onPath = pathLinks();
    const pathNodes = new Set(state.route || []);
    const treeKeys = new Set();
    const members = new Set();
    if (state.tree) {
      for (const [a, b] of state.tree.edges) treeKeys.add(linkKey(a, b));
      for (const m of state.tree.members) members.add(m);
    }
    const links = $("links");
    links.replaceChildren();
    const sorted = [...state.links.entries()].sort((p, q) => (p[0] < q[0] ? -1 : 1));
    const labels = [];
    for (const [key, link] of sorted) {
      const a = state.nodes.get(link.a);
      const b = state.nodes.get(link.b);
      if (!a || !b) continue;
      const line = element("line", {
        x1: a.x.toFixed(1),
        y1: a.y.toFixed(1),
        x2: b.x.toFixed(1),
        y2: b.y.toFixed(1),
        class: "link " + latencyClass(link),
        "data-link": key,
        "data-state": link.state,
      });
      if (onPath.has(key)) line.setAttribute("data-path", "1");
      if (treeKeys.has(key)) line.setAttribute("data-tree", "1");
      const title = element("title", {});
      title.textContent =
        key.replace("|", " \u2013 ") +
        ": " +
        link.state +
        (link.rtt !== null ? ", RTT " + link.rtt.toFixed(2) + " ms" : "") +
        ", loss " +
        (100 * link.loss).toFixed(1) +
        " %";
      line.appendChild(title);
      links.appendChild(line);
      if (link.state === "up" && link.rtt !== null) {
        const label = element("text", {
          x: ((a.x + b.x) / 2).toFixed(1),
          y: ((a.y + b.y) / 2 - 4).toFixed(1),
          class: "link-label",
        });
        label.textContent = link.rtt.toFixed(1) + " ms";
        labels.push(label);
      }
    }
    // Labels over every line, so no line hides one.
    for (const label of labels) links.appendChild(label);
    // Tree edges that are not links this node knows (drawn apart).
    const treeEdges = $("tree-edges");
    treeEdges.replaceChildren();
    if (state.tree) {
      for (const [from, to] of state.tree.edges) {
        if (state.links.has(linkKey(from, to))) continue;
        const a = state.nodes.get(from);
        const b = state.nodes.get(to);
        if (!a || !b) continue;
        treeEdges.appendChild(
          element("line", {
            x1: a.x.toFixed(1),
            y1: a.y.toFixed(1),
            x2: b.x.toFixed(1),
            y2: b.y.toFixed(1),
            class: "tree-edge",
            "data-tree-edge": linkKey(from, to),
          }),
        );
      }
    }
    const nodes = $("nodes");
    nodes.replaceChildren();
    for (const [name, node] of [...state.nodes.entries()].sort((p, q) => (p[0] < q[0] ? -1 : 1))) {
      const g = element("g", {
        class: "node",
        "data-node": name,
        transform: "translate(" + node.x.toFixed(1) + "," + node.y.toFixed(1) + ")",
      });
      if (name === state.thisNode) g.setAttribute("data-this", "1");
      if (pathNodes.has(name)) g.setAttribute("data-path", "1");
      if (members.has(name)) g.setAttribute("data-member", "1");
      if (state.tree && state.tree.source === name) g.setAttribute("data-source", "1");
      g.appendChild(element("circle", { r: 22 }));
      const text = element("text", {});
      text.textContent = name;
      g.appendChild(text);
      const title = element("title", {});
      const info = node.info || {};
      title.textContent =
        name + (info.overlay_ipv4 ? " " + info.overlay_ipv4 : "") + (info.node_id ? "\n" + info.node_id : "");
      g.appendChild(title);
      g.addEventListener("click", () => {
        if (name !== state.thisNode) {
          ensureOption($("destination"), name);
          $("destination").value = name;
          refresh();
        }
      });
      nodes.appendChild(g);
    }
  }

  function ensureOption(select, value) {
    if (![...select.options].some((o) => o.value === value)) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      select.appendChild(option);
    }
  }

  // Keeps the select's options in step with `values` (first option stays).
  function syncOptions(select, values) {
    const chosen = select.value;
    const wanted = new Set(values);
    for (const option of [...select.options].slice(1)) {
      if (!wanted.has(option.value) && option.value !== chosen) option.remove();
    }
    for (const value of values) ensureOption(select, value);
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1024 * 1024 * 1024) return (n / 1048576).toFixed(1) + " MiB";
    return (n / 1073741824).toFixed(2) + " GiB";
  }

  function drawPeers() {
    const body = $("peers").tBodies[0];
    body.replaceChildren();
    for (const peer of state.peers) {
      const row = document.createElement("tr");
      const name = peer.name || (peer.node_id || "").slice(0, 12);
      row.setAttribute("data-peer", name);
      row.setAttribute("data-link", peer.link);
      const cells = [
        [name, false],
        [peer.state, false],
        [peer.link, false],
        [peer.rtt_ms === null || peer.rtt_ms === undefined ? "\u2013" : peer.rtt_ms.toFixed(2) + " ms", true],
        [(100 * (peer.loss || 0)).toFixed(1) + " %", true],
        [peer.path === "relayed" ? "via " + peer.via.join(", ") : "direct", false],
        [formatBytes(peer.bytes_in), true],
        [formatBytes(peer.bytes_out), true],
      ];
      for (const [text, numeric] of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (numeric) cell.className = "num";
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
  }

  function addEvent(event) {
    const list = $("events");
    const item = document.createElement("li");
    item.setAttribute("data-kind", event.kind);
    item.setAttribute("data-seq", event.seq);
    const time = document.createElement("time");
    const at = new Date(event.unix_ms);
    time.textContent = at.toLocaleTimeString();
    item.appendChild(time);
    item.appendChild(document.createTextNode(event.text));
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  async function refreshRoute() {
    const destination = $("destination").value;
    if (!destination) {
      state.route = null;
      $("path-info").textContent = "";
      return;
    }
    const metric = $("metric").value;
    try {
      const route = await getJson(
        "/api/v1/routes/" + encodeURIComponent(destination) + "?metric=" + encodeURIComponent(metric),
      );
      state.route = [state.thisNode].concat(route.path.map((hop) => hop.name));
      const via = route.path.slice(0, -1).map((hop) => hop.name);
      $("path-info").textContent =
        "Path to " +
        destination +
        " (" +
        metric +
        "): " +
        state.route.join(" \u2192 ") +
        (via.length ? " (relayed via " + via.join(", ") + ")" : " (direct)") +
        (route.pinned ? ", pinned" : "") +
        ", cost " +
        route.cost;
    } catch (error) {
      state.route = [];
      $("path-info").textContent = "No path to " + destination + ": " + error.message;
    }
  }

  async function refreshTree() {
    const group = $("group").value;
    if (!group) {
      state.tree = null;
      $("tree-info").textContent = "";
      return;
    }
    const source = $("source").value;
    try {
      const tree = await getJson(
        "/api/v1/groups/" +
          encodeURIComponent(group) +
          "/tree" +
          (source ? "?source=" + encodeURIComponent(source) : ""),
      );
      state.tree = tree;
      $("tree-info").textContent =
        "Tree of " +
        group +
        " from " +
        tree.source +
        ": " +
        (tree.edges.length ? tree.edges.map((e) => e[0] + "\u2192" + e[1]).join(", ") : "no edges") +
        "; members " +
        tree.members.join(", ") +
        (tree.unreached.length ? "; unreached " + tree.unreached.join(", ") : "");
    } catch (error) {
      state.tree = null;
      $("tree-info").textContent = "No tree for " + group + ": " + error.message;
    }
  }

  async function refresh() {
    if (state.refreshing) return;
    state.refreshing = true;
    try {
      const [topology, peers, groups] = await Promise.all([
        getJson("/api/v1/topology"),
        getJson("/api/v1/peers"),
        getJson("/api/v1/groups"),
      ]);
      const firstTime = state.refreshes === 0;
      updateTopology(topology);
      state.peers = peers;
      state.groups = groups;
      const others = [...state.nodes.keys()].filter((n) => n !== state.thisNode).sort();
      syncOptions($("destination"), others);
      syncOptions($("source"), [...state.nodes.keys()].sort());
      syncOptions(
        $("group"),
        groups.map((g) => g.group),
      );
      await Promise.all([refreshRoute(), refreshTree()]);
      // Each step is quadratic in the nodes: bound the work on big maps.
      const budget = Math.max(1, Math.floor(3e6 / Math.max(1, state.nodes.size) ** 2));
      layout(Math.min(firstTime ? 300 : 5, budget));
      draw();
      drawPeers();
      state.refreshes += 1;
      $("live").setAttribute("data-live", "1");
      $("error").hidden = true;
      document.body.setAttribute("data-ready", "1");
      document.body.setAttribute("data-refreshes", String(state.refreshes));
    } catch (error) {
      $("live").setAttribute("data-live", "0");
      $("error").hidden = false;
      $("error").textContent = "The node's API did not answer: " + error.message;
    } finally {
      state.refreshing = false;
    }
  }

  async function followEvents() {
    try {
      const recent = await getJson("/api/v1/events/recent");
      for (const event of recent.slice(-MAX_EVENTS)) addEvent(event);
    } catch (_) {
      /* the stream below will try again */
    }
    if (!window.EventSource) return;
    const source = new EventSource("/api/v1/events");
    const kinds = [
      "session_established",
      "session_lost",
      "handshake_rejected",
      "path_changed",
      "link_down",
      "link_up",
      "group_joined",
      "group_left",
      "peer_roamed",
    ];
    for (const kind of kinds) {
      source.addEventListener(kind, (message) => {
        try {
          addEvent(JSON.parse(message.data));
        } catch (_) {
          return;
        }
        if (kind !== "handshake_rejected") refresh();
      });
    }
  }

  for (const id of ["destination", "metric", "group", "source"]) {
    $(id).addEventListener("change", refresh);
  }
  // Preselect from the URL: ?destination=b&group=239.1.2.3&source=a
  const params = new URLSearchParams(window.location.search);
  for (const id of ["destination", "group", "source"]) {
    const value = params.get(id);
    if (value) {
      ensureOption($(id), value);
      $(id).value = value;
    }
  }
  if (params.get("metric")) $("metric").value = params.get("metric");

  refresh();
  followEvents();
  setInterval(refresh, REFRESH_MS);
})();
