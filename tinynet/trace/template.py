"""The explainer page's Jinja2 template, with its style and script inline (no file to fetch).

The script does no arithmetic on the network's numbers: it builds the unit panels from the
embedded JSON (numbers arrive as formatted strings), maps a click on a channel map to the
nearest explained unit, and draws the receptive field's rectangle on the photo.
"""

PAGE_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 12px 20px; background: #263238; color: #fff; }
header h1 { margin: 0; font-size: 1.4em; }
main { display: flex; align-items: flex-start; }
aside { position: sticky; top: 0; width: 300px; flex: none; padding: 12px; background: #fff; border-right: 1px solid #ddd;
        max-height: 100vh; overflow-y: auto; box-sizing: border-box; }
#content { flex: 1; padding: 12px 20px; min-width: 0; }
.photo-box { position: relative; display: inline-block; }
.photo-box img, .photo-box canvas { width: 270px; height: auto; image-rendering: pixelated; display: block; }
.photo-box canvas { position: absolute; left: 0; top: 0; }
section.layer { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 0 0 14px; padding: 10px 14px; }
section.layer h2 { font-size: 1.1em; margin: 4px 0 8px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 4px 0; }
td, th { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
.summary-row td { text-align: left; }
.maps { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.maps figure { margin: 0; max-width: 48%; }
.maps img { image-rendering: pixelated; max-width: 100%; height: auto; }
img.map { cursor: crosshair; display: block; }
.map-box { position: relative; display: inline-block; max-width: 100%; }
.map-box canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; }
figcaption { font-size: 0.8em; color: #555; }
.num { font-family: ui-monospace, monospace; background: #eef4ff; padding: 0 2px; border-radius: 2px; }
.unit-panel { border-top: 1px dashed #bbb; margin-top: 8px; padding-top: 6px; }
.step { margin: 6px 0; }
.step h4 { margin: 2px 0; font-size: 0.95em; color: #37474f; }
.step p { margin: 2px 0; }
.vector { display: inline-block; vertical-align: top; margin: 2px 8px 2px 0; }
.vector table { font-size: 0.6em; }
.vector td { padding: 0 2px; }
.cols { display: flex; gap: 24px; flex-wrap: wrap; }
.cols > div { flex: 1; min-width: 340px; overflow-x: auto; }
.stats span { margin-right: 12px; }
.bar { display: inline-block; height: 10px; background: #1976d2; vertical-align: middle; }
</style>
</head>
<body>
<header><h1>{{ title }}</h1>{% if subtitle %}<div>{{ subtitle }}</div>{% endif %}</header>
<main>
<aside>
  <div class="photo-box"><img id="photo" src="{{ photo }}" width="{{ photo_width }}" height="{{ photo_height }}" alt="the input">
    <canvas id="rf-canvas" width="{{ photo_width }}" height="{{ photo_height }}"></canvas></div>
  <p id="rf-text">Pick a unit: its receptive field appears on the photo.</p>
  <h3>Prediction</h3>
  <table id="probabilities"><tr><th>class</th><th>probability</th><th></th></tr>
  {% for p in probs %}<tr><td>{{ p.name }}</td><td><span class="num" data-name="probability">{{ p.p }}</span></td>
    <td style="width:90px"><span class="bar" style="width:{{ p.percent }}%"></span></td></tr>{% endfor %}
  </table>
  <p>loss for the class <b>{{ target }}</b>: <span class="num" data-name="loss">{{ loss }}</span></p>
  <h3>Totals</h3>
  <table id="totals">
  <tr><td>input</td><td>{{ totals.input }}</td></tr>
  <tr><td>parameters</td><td>{{ totals.params }}</td></tr>
  <tr><td>multiply-adds</td><td>{{ totals.mult_adds }}</td></tr>
  <tr><td>activations</td><td>{{ totals.activations }} ({{ totals.activation_bytes }})</td></tr>
  </table>
  <h3>Layers</h3>
  <ol style="padding-left:18px;font-size:0.85em">{% for layer in layers %}<li><a href="#layer-{{ layer.index }}">{{ layer.label }}</a></li>{% endfor %}</ol>
</aside>
<div id="content">
<section class="overview">
  <div class="maps">
  {% if extras.saliency %}<figure><img id="saliency" src="{{ extras.saliency_overlay }}" width="{{ photo_width }}" alt="saliency">
    <figcaption>Saliency: |∂loss/∂input| (largest over the colour channels), red where a change of the pixel changes the loss most</figcaption></figure>{% endif %}
  {% if extras.filters %}<figure><img id="filters" src="{{ extras.filters }}" alt="first-layer filters">
    <figcaption>The filters of {{ extras.filters_label }}, each scaled from its smallest weight (black) to its largest (white)</figcaption></figure>{% endif %}
  </div>
  <p>How to read the page: every layer below shows its row of <code>tinynet.summary</code> (with the
  arithmetic), its output channels, their statistics and the gradient that reached them in the backward
  pass of the loss. Click a channel map, or choose a unit from the list, to see how its value was computed
  and where its gradient went; every number is the one tinynet computed.</p>
</section>
{% for layer in layers %}
<section class="layer" id="layer-{{ layer.index }}" data-index="{{ layer.index }}" data-label="{{ layer.label }}" data-kind="{{ layer.kind }}">
  <h2>{{ layer.label }} <small>({{ layer.kind }}{% if layer.name %}, {{ layer.name }}{% endif %})</small></h2>
  {% if layer.row %}
  <table class="summary-row">
    <tr><th>output volume and layer</th><td class="row-text">{{ layer.row.text }}</td></tr>
    {% if layer.row.size_formula %}<tr><th>size arithmetic</th><td class="size-formula">{{ layer.row.size_formula }}</td></tr>{% endif %}
    {% if layer.row.params_formula %}<tr><th>parameters</th><td class="params-formula">{{ layer.row.params_formula }}</td></tr>{% endif %}
    <tr><th>activations</th><td>{{ "{:,}".format(layer.row.activations) }}</td></tr>
    {% if layer.row.mult_adds_formula %}<tr><th>multiply-adds</th><td class="mult-adds-formula">{{ layer.row.mult_adds_formula }}</td></tr>{% endif %}
  </table>
  {% endif %}
  <p class="stats">
    <span>mean <span class="num" data-name="mean">{{ layer.stats.mean }}</span></span>
    <span>std <span class="num" data-name="std">{{ layer.stats.std }}</span></span>
    <span>min <span class="num" data-name="min">{{ layer.stats.min }}</span></span>
    <span>max <span class="num" data-name="max">{{ layer.stats.max }}</span></span>
    <span>zeros <span class="num" data-name="zeros_percent">{{ layer.zeros_percent }}</span>%{% if layer.after_relu %} (after the ReLU){% endif %}</span>
    {% if layer.grad_norm %}<span>gradient norm |∂loss/∂out| <span class="num" data-name="grad_norm">{{ layer.grad_norm }}</span></span>{% endif %}
  </p>
  <div class="maps">
  {% if layer.map %}<figure><div class="map-box"><img class="map" data-layer="{{ layer.index }}" src="{{ layer.map.src }}" width="{{ layer.map.width }}" height="{{ layer.map.height }}" alt="{{ layer.label }} output">
    <canvas class="map-mark" data-layer="{{ layer.index }}" width="{{ layer.map.width }}" height="{{ layer.map.height }}"></canvas></div>
    <figcaption>output, channels 0–{{ layer.shown_channels - 1 }} (each from its min, black, to its max, white); click a map to pick a unit
    (channels 0–{{ layer.unit_channels - 1 }} are explained, at rows and columns {{ layer.grid_rows }} × {{ layer.grid_cols }}; the picked one is framed)</figcaption></figure>{% endif %}
  {% if layer.grad_map %}<figure><img class="grad" src="{{ layer.grad_map.src }}" width="{{ layer.grad_map.width }}" height="{{ layer.grad_map.height }}" alt="{{ layer.label }} gradient">
    <figcaption>∂loss/∂output, same channels (blue negative, white zero, red positive)</figcaption></figure>{% endif %}
  {% if layer.vector %}<figure><img class="vector-map" src="{{ layer.vector.src }}" width="{{ layer.vector.width }}" height="{{ layer.vector.height }}" alt="{{ layer.label }} output">
    <figcaption>output values, row by row</figcaption></figure>{% endif %}
  {% if layer.grad_vector %}<figure><img class="grad" src="{{ layer.grad_vector.src }}" width="{{ layer.grad_vector.width }}" height="{{ layer.grad_vector.height }}" alt="{{ layer.label }} gradient">
    <figcaption>∂loss/∂output</figcaption></figure>{% endif %}
  </div>
  {% if layer.units %}
  <label>unit: <select class="unit-select" data-layer="{{ layer.index }}">
    {% for key, name in layer.units %}<option value="{{ key }}"{% if key == layer.default_unit %} selected{% endif %}>{{ name }}</option>{% endfor %}
  </select></label>
  <div class="unit-panel" data-layer="{{ layer.index }}"></div>
  {% endif %}
</section>
{% endfor %}
<section class="layer" id="softmax" data-label="SOFTMAX" data-kind="Softmax">
  <h2>SOFTMAX and the loss <small>(in the loss, after the last layer)</small></h2>
  <div class="unit-panel" id="softmax-panel"></div>
</section>
</div>
</main>
<script id="tinynet-data" type="application/json">{{ data_json|safe }}</script>
<script>
"use strict";
window.tinynetErrors = [];
window.addEventListener("error", function (e) { window.tinynetErrors.push(String(e.message)); });
const DATA = JSON.parse(document.getElementById("tinynet-data").textContent);

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children || []) node.append(child);
  return node;
}
function token(t) {
  if (Array.isArray(t)) return el("span", {"class": "num", "data-name": t[0]}, [t[1]]);
  return document.createTextNode(t);
}
function line(tokens) { return el("p", {}, tokens.map(token)); }
function table(spec) {
  const t = el("table");
  t.append(el("tr", {}, spec.header.map(h => el("th", {}, [h]))));
  for (const row of spec.rows) t.append(el("tr", {}, row.map(c => el("td", {}, [token(c)]))));
  return t;
}
function vector(spec) {
  // a (channels, rows, cols) block as one small table per channel
  const v = DATA.vectors[spec.key];
  const box = el("div", {"class": "vector", "data-vector": spec.name}, [el("div", {}, [spec.title])]);
  const [c, h, w] = v.shape;
  for (let ch = 0; ch < c; ch++) {
    const t = el("table", {"data-channel": String(ch)});
    t.append(el("tr", {}, [el("th", {"colspan": String(w)}, [v.labels[ch]])]));
    for (let i = 0; i < h; i++) {
      const cells = [];
      for (let j = 0; j < w; j++) cells.push(el("td", {}, [token([spec.name, v.values[(ch * h + i) * w + j]])]));
      t.append(el("tr", {}, cells));
    }
    box.append(t);
  }
  return box;
}
function steps(list, container) {
  for (const s of list) {
    const box = el("div", {"class": "step"}, [el("h4", {}, [s.title])]);
    for (const l of s.lines) box.append(line(l));
    if (s.table) box.append(table(s.table));
    if (s.vectors) box.append(el("div", {}, s.vectors.map(vector)));
    container.append(box);
  }
}
function drawField(rf, label) {
  const canvas = document.getElementById("rf-canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const text = document.getElementById("rf-text");
  if (!rf) { text.textContent = label + ": sees the whole input"; return; }
  const [top, left, bottom, right] = rf;
  ctx.lineWidth = Math.max(1, canvas.width / 150);
  ctx.strokeStyle = "#ff1744";
  ctx.strokeRect(left, top, right - left + 1, bottom - top + 1);
  text.replaceChildren(label + ": receptive field rows ", token(["rf_top", String(top)]), "–",
    token(["rf_bottom", String(bottom)]), ", columns ", token(["rf_left", String(left)]), "–",
    token(["rf_right", String(right)]));
}
function markMap(layer, u) {
  // frame the picked unit on its channel map (the map's own pixels: tiles and their scale)
  const canvas = document.querySelector('canvas.map-mark[data-layer="' + layer.index + '"]');
  if (!canvas || u.length !== 3) return;
  const g = layer.layout, ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const row = Math.floor(u[0] / g.cols), col = u[0] % g.cols;
  const size = Math.max(g.scale, 4);
  const left = g.pad + col * (g.tile_w + g.pad) + (u[2] + 0.5) * g.scale - size / 2;
  const top = g.pad + row * (g.tile_h + g.pad) + (u[1] + 0.5) * g.scale - size / 2;
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#ff1744";
  ctx.strokeRect(left - 1, top - 1, size + 2, size + 2);
}
function show(layerIndex, key) {
  const layer = DATA.layers.find(l => l.index === layerIndex);
  const unit = layer.units[key];
  const panel = document.querySelector('.unit-panel[data-layer="' + layerIndex + '"]');
  panel.replaceChildren();
  panel.setAttribute("data-unit", key);
  const u = unit.unit;
  if (u.length === 3) { panel.setAttribute("data-channel", u[0]); panel.setAttribute("data-y", u[1]); panel.setAttribute("data-x", u[2]); }
  else { panel.setAttribute("data-index", u[0]); }
  panel.append(el("h3", {}, [unit.title]));
  markMap(layer, u);
  if (unit.rf) panel.append(el("p", {"class": "rf"}, ["receptive field: rows ", token(["rf_top", String(unit.rf[0])]), "–",
      token(["rf_bottom", String(unit.rf[2])]), ", columns ", token(["rf_left", String(unit.rf[1])]), "–",
      token(["rf_right", String(unit.rf[3])]), " of the input"]));
  const cols = el("div", {"class": "cols"});
  const fwd = el("div", {"class": "forward"}, [el("h4", {}, ["Forward: how the value was computed"])]);
  const bwd = el("div", {"class": "backward"}, [el("h4", {}, ["Backward: where its gradient went"])]);
  steps(unit.forward, fwd);
  steps(unit.backward, bwd);
  cols.append(fwd, bwd);
  panel.append(cols);
  return unit;
}
function pick(layerIndex, key, draw) {
  const select = document.querySelector('select.unit-select[data-layer="' + layerIndex + '"]');
  select.value = key;
  const unit = show(layerIndex, key);
  if (draw) drawField(unit.rf || null, unit.title);
}
document.querySelectorAll("select.unit-select").forEach(function (select) {
  const index = Number(select.dataset.layer);
  select.addEventListener("change", function () { pick(index, select.value, true); });
  show(index, select.value);
});
document.querySelectorAll("img.map").forEach(function (img) {
  img.addEventListener("click", function (event) {
    // which tile, and which position inside it; then the nearest explained position
    const index = Number(img.dataset.layer);
    const layer = DATA.layers.find(l => l.index === index);
    const g = layer.layout;
    const box = img.getBoundingClientRect();
    const px = (event.clientX - box.left) * img.naturalWidth / box.width;
    const py = (event.clientY - box.top) * img.naturalHeight / box.height;
    const col = Math.floor((px - g.pad) / (g.tile_w + g.pad)), row = Math.floor((py - g.pad) / (g.tile_h + g.pad));
    const channel = row * g.cols + col;
    if (col < 0 || col >= g.cols || channel < 0 || channel >= g.count) return;
    if (channel >= layer.channels) {
      document.getElementById("rf-text").textContent = layer.label + " channel " + channel +
        ": its units are not on this page (examples/explain.py --channels " + (channel + 1) + " puts them there)";
      return;
    }
    const y = (py - g.pad - row * (g.tile_h + g.pad)) / g.scale, x = (px - g.pad - col * (g.tile_w + g.pad)) / g.scale;
    let best = null, distance = Infinity;
    for (const [py0, px0] of layer.positions) {
      const d = (py0 - y) * (py0 - y) + (px0 - x) * (px0 - x);
      if (d < distance) { distance = d; best = [py0, px0]; }
    }
    pick(index, channel + ":" + best[0] + ":" + best[1], true);
  });
});
(function () {
  const panel = document.getElementById("softmax-panel");
  steps(DATA.softmax, panel);
})();
</script>
</body>
</html>
"""
