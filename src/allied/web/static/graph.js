/* Allied console: interactive STIX relationship graph.
   Plain script (no libraries) because the CSP only allows same-origin
   scripts. The data is untrusted partner content, so every string goes into
   the DOM through textContent / setAttribute, never through HTML parsing. */
(function () {
  'use strict';

  var SVG_NS = 'http://www.w3.org/2000/svg';
  var RADIUS = 14;
  var MAX_LABEL = 32;
  var MAX_NODES = 500;      // server caps at 150; this only guards the O(n^2) layout
  var GRAVITY = 0.1;
  var MAX_SCALE = 1.5;
  var DRAG_THRESHOLD = 4;   // px of pointer travel that turns a click into a drag
  var PALETTE = {
    'indicator': '#1f77b4', 'malware': '#d62728', 'threat-actor': '#8c2d04',
    'intrusion-set': '#9467bd', 'campaign': '#e377c2', 'attack-pattern': '#ff7f0e',
    'report': '#17becf', 'sighting': '#bcbd22', 'identity': '#2ca02c',
    'vulnerability': '#b8860b', 'tool': '#8c564b', 'infrastructure': '#393b79',
    'location': '#637939', 'observed-data': '#6baed6', 'relationship': '#5254a3'
  };
  var DEFAULT_COLOUR = '#9aa0a6';

  function svgEl(name, attrs, parent) {
    var el = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function truncate(s) {
    return s.length > MAX_LABEL ? s.slice(0, MAX_LABEL - 1) + '\u2026' : s;
  }

  function message(box, text) {
    box.textContent = '';
    var p = document.createElement('p');
    p.className = 'muted';
    p.textContent = text;
    box.appendChild(p);
    box.setAttribute('data-rendered', '0');
  }

  // Only same-origin http(s) links are followed: a partner-controlled href
  // must not become a javascript: URL or an off-site redirect.
  function safeHref(href) {
    if (typeof href !== 'string' || href === '') return null;
    try {
      var u = new URL(href, window.location.href);
      if (u.origin !== window.location.origin) return null;
      if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
      return u.href;
    } catch (e) {
      return null;
    }
  }

  // Normalise the JSON: drop malformed/duplicate nodes, dangling edges and self-loops.
  function clean(data) {
    var nodes = [], index = {}, edges = [];
    ((data && Array.isArray(data.nodes)) ? data.nodes : []).forEach(function (n) {
      if (!n || n.id === undefined || n.id === null || nodes.length >= MAX_NODES) return;
      var id = String(n.id);
      if (Object.prototype.hasOwnProperty.call(index, id)) return;
      index[id] = nodes.length;
      nodes.push({
        id: id, label: String(n.label || id), type: String(n.type || ''),
        href: safeHref(n.href), focus: n.focus === true, x: 0, y: 0, edges: []
      });
    });
    ((data && Array.isArray(data.edges)) ? data.edges : []).forEach(function (e) {
      if (!e) return;
      var s = index[String(e.source)], t = index[String(e.target)];
      if (s === undefined || t === undefined || s === t) return;
      edges.push({ s: s, t: t, label: String(e.label || '') });
    });
    return { nodes: nodes, edges: edges };
  }

  function clamp(n, w, h) {
    n.x = Math.max(RADIUS + 4, Math.min(w - RADIUS - 4, n.x));
    n.y = Math.max(RADIUS + 4, Math.min(h - RADIUS - 18, n.y));  // room for the label
  }

  // Fruchterman-Reingold style layout with linear cooling, run in free space
  // and then fitted into the box (clamping during the run piles nodes up on the
  // walls). Starting positions are on a circle by index (no randomness) so the
  // same data always renders the same; the focus node is pinned at the centre
  // of the run, so the rest arranges itself around it.
  function layout(nodes, edges, w, h) {
    // Ideal edge length from the area per node; gravity is stronger along the
    // short side so the free layout already has roughly the box's shape.
    var n = nodes.length, aspect = Math.max(0.5, Math.min(4, w / h));
    var k = Math.max(30, Math.min(120, Math.sqrt((w * h) / n)));
    var ring = k * Math.sqrt(n) / 2 + 1, gx = GRAVITY, gy = GRAVITY * aspect, far2 = 9 * k * k;
    var focus = nodes.findIndex(function (d) { return d.focus; });
    nodes.forEach(function (d, i) {
      var a = (2 * Math.PI * i) / n;
      d.x = i === focus ? 0 : ring * Math.cos(a);
      d.y = i === focus ? 0 : ring * Math.sin(a);
    });
    var iterations = n > 250 ? 150 : 300;  // keep big graphs responsive
    var dx = new Float64Array(n), dy = new Float64Array(n);
    for (var it = 0; it < iterations; it++) {
      var temp = (ring / 2) * (1 - it / iterations) + 0.5;
      dx.fill(0); dy.fill(0);
      for (var i = 0; i < n; i++) {           // repulsion between every pair
        for (var j = i + 1; j < n; j++) {
          var ex = nodes[i].x - nodes[j].x, ey = nodes[i].y - nodes[j].y;
          var d2 = ex * ex + ey * ey;
          if (d2 > far2) continue;            // cut-off, as in FR: distant parts don't drift apart
          if (d2 < 0.01) { ex = 0.1 * (1 + (i % 7)); ey = 0.1 * (1 + (j % 5)); d2 = ex * ex + ey * ey; }
          var f = (k * k) / d2;             // (k^2/d) / d, to scale the unit vector
          dx[i] += ex * f; dy[i] += ey * f; dx[j] -= ex * f; dy[j] -= ey * f;
        }
      }
      edges.forEach(function (e) {            // springs along edges
        var a = nodes[e.s], b = nodes[e.t];
        var ex = a.x - b.x, ey = a.y - b.y;
        var f = Math.sqrt(ex * ex + ey * ey) / k;   // (d^2/k) / d
        dx[e.s] -= ex * f; dy[e.s] -= ey * f; dx[e.t] += ex * f; dy[e.t] += ey * f;
      });
      for (var m = 0; m < n; m++) {
        if (m === focus) continue;
        var nd = nodes[m];
        dx[m] -= nd.x * gx;                   // gravity keeps unlinked parts close
        dy[m] -= nd.y * gy;
        var len = Math.sqrt(dx[m] * dx[m] + dy[m] * dy[m]) || 1;
        var step = Math.min(len, temp);
        nd.x += (dx[m] / len) * step;
        nd.y += (dy[m] / len) * step;
      }
    }
    fit(nodes, w, h);
  }

  // Scale each axis to fill the box (at most MAX_SCALE, so small graphs stay
  // compact) and centre the drawing.
  function fit(nodes, w, h) {
    var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    nodes.forEach(function (d) {
      minX = Math.min(minX, d.x); maxX = Math.max(maxX, d.x);
      minY = Math.min(minY, d.y); maxY = Math.max(maxY, d.y);
    });
    var left = Math.min(RADIUS + 90, w / 5), top = RADIUS + 8, bottom = RADIUS + 22;  // room for labels
    var sx = Math.min(MAX_SCALE, (w - 2 * left) / ((maxX - minX) || 1));
    var sy = Math.min(MAX_SCALE, (h - top - bottom) / ((maxY - minY) || 1));
    var ox = (w - (maxX - minX) * sx) / 2, oy = top + (h - top - bottom - (maxY - minY) * sy) / 2;
    nodes.forEach(function (d) {
      d.x = ox + (d.x - minX) * sx;
      d.y = oy + (d.y - minY) * sy;
      clamp(d, w, h);
    });
  }

  function render(box, data) {
    var g = clean(data), nodes = g.nodes, edges = g.edges;
    if (!nodes.length) { message(box, 'No relationships to show.'); return; }
    var w = box.clientWidth || 800, h = box.clientHeight || 440;
    layout(nodes, edges, w, h);

    box.textContent = '';
    var svg = svgEl('svg', { viewBox: '0 0 ' + w + ' ' + h, role: 'group',
      'aria-label': 'Relationship graph' }, box);
    var edgeLayer = svgEl('g', { 'class': 'edges' }, svg);
    var nodeLayer = svgEl('g', { 'class': 'nodes' }, svg);   // drawn above edges

    function placeEdge(e) {
      var a = nodes[e.s], b = nodes[e.t];
      e.line.setAttribute('x1', a.x.toFixed(1)); e.line.setAttribute('y1', a.y.toFixed(1));
      e.line.setAttribute('x2', b.x.toFixed(1)); e.line.setAttribute('y2', b.y.toFixed(1));
      e.text.setAttribute('x', ((a.x + b.x) / 2).toFixed(1));
      e.text.setAttribute('y', ((a.y + b.y) / 2 - 3).toFixed(1));
    }
    function placeNode(d) {
      d.el.setAttribute('transform', 'translate(' + d.x.toFixed(1) + ',' + d.y.toFixed(1) + ')');
      d.edges.forEach(placeEdge);
    }

    edges.forEach(function (e) {
      var ge = svgEl('g', { 'class': 'edge' }, edgeLayer);
      e.line = svgEl('line', {}, ge);
      e.text = svgEl('text', { 'text-anchor': 'middle' }, ge);
      e.text.textContent = truncate(e.label);
      nodes[e.s].edges.push(e); nodes[e.t].edges.push(e);
    });

    nodes.forEach(function (d) {
      var gn = svgEl('g', { 'class': d.focus ? 'node focus' : 'node', 'data-id': d.id,
        tabindex: 0 }, nodeLayer);
      if (d.href) gn.setAttribute('role', 'link');
      gn.setAttribute('aria-label', d.label + (d.type ? ' (' + d.type + ')' : ''));
      var title = svgEl('title', {}, gn);
      title.textContent = d.label + (d.type ? ' \u2014 ' + d.type : '');
      svgEl('circle', { r: RADIUS, fill: PALETTE[d.type] || DEFAULT_COLOUR }, gn);
      var t = svgEl('text', { y: RADIUS + 12, 'text-anchor': 'middle' }, gn);
      t.textContent = truncate(d.label);
      d.el = gn;
      placeNode(d);
      attachInteraction(svg, d, w, h, placeNode);
    });

    box.setAttribute('data-rendered', String(nodes.length));
  }

  // Screen (client) coordinates -> SVG user units, so drags track the pointer
  // whatever size the box is scaled to.
  function toSvg(svg, evt) {
    var ctm = svg.getScreenCTM();
    if (!ctm) return { x: evt.clientX, y: evt.clientY };
    var p = new DOMPoint(evt.clientX, evt.clientY).matrixTransform(ctm.inverse());
    return { x: p.x, y: p.y };
  }

  function attachInteraction(svg, d, w, h, placeNode) {
    var el = d.el, drag = null;
    el.addEventListener('pointerdown', function (evt) {
      if (evt.button !== 0) return;
      evt.preventDefault();
      var p = toSvg(svg, evt);
      drag = { id: evt.pointerId, sx: evt.clientX, sy: evt.clientY, ox: d.x - p.x, oy: d.y - p.y, moved: false };
      el.setPointerCapture(evt.pointerId);
      el.focus({ preventScroll: true });
    });
    el.addEventListener('pointermove', function (evt) {
      if (!drag || evt.pointerId !== drag.id) return;
      if (!drag.moved && Math.hypot(evt.clientX - drag.sx, evt.clientY - drag.sy) < DRAG_THRESHOLD) return;
      drag.moved = true;
      el.classList.add('dragging');
      var p = toSvg(svg, evt);
      d.x = p.x + drag.ox; d.y = p.y + drag.oy;
      clamp(d, w, h);
      placeNode(d);
    });
    function end(evt, navigate) {
      if (!drag || evt.pointerId !== drag.id) return;
      var wasClick = !drag.moved;
      drag = null;
      el.classList.remove('dragging');
      if (el.hasPointerCapture(evt.pointerId)) el.releasePointerCapture(evt.pointerId);
      if (navigate && wasClick && d.href) window.location.assign(d.href);
    }
    el.addEventListener('pointerup', function (evt) { end(evt, true); });
    el.addEventListener('pointercancel', function (evt) { end(evt, false); });
    el.addEventListener('keydown', function (evt) {
      if (evt.key === 'Enter' && d.href) { evt.preventDefault(); window.location.assign(d.href); }
    });
  }

  function init() {
    var box = document.getElementById('graph');
    if (!box || box.hasAttribute('data-rendered') || box.getAttribute('aria-busy') === 'true') return;
    var src = box.getAttribute('data-source');
    if (!src) { message(box, 'Could not load the graph.'); return; }
    box.setAttribute('aria-busy', 'true');
    fetch(src, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (data) { render(box, data); })
      .catch(function () { message(box, 'Could not load the graph.'); })
      .then(function () { box.removeAttribute('aria-busy'); });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
  // A graph swapped in later by htmx gets rendered too.
  document.addEventListener('htmx:load', init);
})();
