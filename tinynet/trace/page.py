"""The explainer page: a trace written out as one static HTML file and its images.

``write_page(t, out_dir, photo=..., classes=...)`` writes ``out_dir/index.html`` and
``out_dir/img/*.png``.  The page needs no server and no network: it opens from the file
system, its style and script are inline, its images lie beside it.  Every number on it was
computed here, in Python, from the trace (the step-by-step arithmetic of
:mod:`tinynet.trace.units`, embedded as JSON); the page's script only shows, hides and draws
(the receptive field on the photo).

Which units are explained: for image-shaped layers the first ``channels`` channels (16) at a
``grid`` x ``grid`` lattice of output positions (3 x 3; clicking a channel map picks the nearest
one), for vectors the first and the largest 8 units (:func:`tinynet.trace.units.unit_grid`).
The maps show up to ``map_channels`` channels (96).  With the defaults an AlexNet page holds
about 2,700 explained units.
"""
import json
import os
import time

import numpy as np

from . import images
from .template import PAGE_TEMPLATE
from .units import explain_unit, fmt, softmax_steps, unit_grid, vector_units

__all__ = ["write_page", "page_data"]


def _bytes(n):
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _save(image, folder, name):
    path = os.path.join(folder, "img", name)
    image.save(path, optimize=False, compress_level=6)
    return f"img/{name}"


def _unit_key(unit):
    return ":".join(str(u) for u in unit)


def _unit_title(record, unit):
    if len(unit) == 3:
        return f"{record.label} unit: channel {unit[0]}, row {unit[1]}, column {unit[2]}"
    return f"{record.label} unit {unit[0]}"


def page_data(t, out_dir, channels=16, grid=3, classes=None, map_channels=96):
    """The layers' sections (dicts for the template) and the JSON data of the units."""
    layers, data_layers, vectors = [], [], {}
    for record in t.records:
        shape = record.output_shape
        units, positions = unit_grid(shape, channels, grid)
        if units is None and record.output is not None and record.output.ndim == 2:
            units = [(u,) for u in vector_units(record.output[0])]
        units = units or []
        unit_data, order = {}, []
        for unit in units:
            key = _unit_key(unit)
            entry = explain_unit(record, unit, vectors)
            entry["title"] = _unit_title(record, unit)
            entry["unit"] = list(unit)
            if len(unit) == 3 and record.geometry is not None:
                entry["rf"] = list(record.receptive_field(unit[1], unit[2]))
            unit_data[key] = entry
            order.append(key)
        # the unit shown first: the most active of the explained ones (a corner unit is often 0)
        values = [float(record.output[(0,) + tuple(u)]) for u in units]
        default = order[int(np.argmax(values))] if units else None
        section = {"index": record.index, "default_unit": default, "label": record.label, "name": record.name, "kind": record.kind,
                   "row": record.row, "units": [(k, unit_data[k]["title"]) for k in order]}
        stats = record.statistics()
        section["stats"] = {k: fmt(v) for k, v in stats.items()}
        section["zeros_percent"] = f"{100 * stats['zeros']:.1f}"
        section["after_relu"] = record.kind == "ReLU"
        norm = record.grad_norm()
        section["grad_norm"] = fmt(norm) if norm is not None else None
        slug = f"{record.index:02d}_{record.label.replace(' ', '_').lower()}"
        if record.output is not None and record.output.ndim == 4:
            shown = record.output[0, :map_channels]
            image, layout = images.channel_grid(shown)
            section["map"] = {"src": _save(image, out_dir, f"{slug}_out.png"), "layout": layout,
                              "width": image.width, "height": image.height}
            if record.grad_output is not None:
                gimage, _ = images.channel_grid(record.grad_output[0, :map_channels], signed=True)
                section["grad_map"] = {"src": _save(gimage, out_dir, f"{slug}_grad.png"),
                                       "width": gimage.width, "height": gimage.height}
            section["shown_channels"] = int(shown.shape[0])
            section["unit_channels"] = min(channels, int(shown.shape[0]))
            section["grid_rows"] = ", ".join(str(v) for v in sorted({p[0] for p in positions}))
            section["grid_cols"] = ", ".join(str(v) for v in sorted({p[1] for p in positions}))
        elif record.output is not None and record.output.ndim == 2:
            image, layout = images.vector_image(record.output[0])
            section["vector"] = {"src": _save(image, out_dir, f"{slug}_out.png"), "width": image.width,
                                 "height": image.height}
            if record.grad_output is not None:
                gimage, _ = images.vector_image(record.grad_output[0], signed=True)
                section["grad_vector"] = {"src": _save(gimage, out_dir, f"{slug}_grad.png"),
                                          "width": gimage.width, "height": gimage.height}
        layers.append(section)
        data_layers.append({"index": record.index, "label": record.label, "units": unit_data, "order": order,
                            "positions": [list(p) for p in positions] if positions else [],
                            "channels": min(channels, shape[1]) if len(shape) == 4 else 0,
                            "layout": section.get("map", {}).get("layout")})
    return layers, {"layers": data_layers, "vectors": vectors,
                    "softmax": softmax_steps(t.logits, t.target, classes)}


def write_page(t, out_dir, photo_rgb=None, classes=None, title=None, channels=16, grid=3, map_channels=96,
               subtitle=""):
    """Write the explainer page of trace ``t`` into ``out_dir``; returns a dict with the page's
    path, its size in bytes (HTML plus images) and the seconds it took."""
    import jinja2

    started = time.perf_counter()
    os.makedirs(os.path.join(out_dir, "img"), exist_ok=True)
    x = t.input[0]
    photo = images.photo_image(x, photo_rgb)
    photo_src = _save(photo.convert("RGB"), out_dir, "photo.png")
    layers, data = page_data(t, out_dir, channels, grid, classes, map_channels)
    probabilities = t.probabilities[0]
    names = list(classes) if classes else [str(i) for i in range(probabilities.size)]
    order = np.argsort(-probabilities, kind="stable")[:10]
    probs = [{"name": names[i], "p": fmt(probabilities[i]), "percent": f"{100 * probabilities[i]:.1f}"} for i in order]
    extras = {}
    if t.input_grad is not None and t.input.ndim == 4:
        heat, over = images.saliency_images(t.saliency(0), photo)
        extras["saliency"] = _save(heat, out_dir, "saliency.png")
        extras["saliency_overlay"] = _save(over, out_dir, "saliency_overlay.png")
    first_conv = next((r for r in t.records if r.kind == "Conv2d"), None)
    if first_conv is not None:
        fimage = images.filter_grid(first_conv.module.weight.numpy())
        extras["filters"] = _save(fimage, out_dir, "filters.png")
        extras["filters_label"] = first_conv.label
    s = t.summary
    totals = {"params": f"{s.total_params:,}", "mult_adds": f"{s.total_mult_adds:,}",
              "activations": f"{s.total_activations:,}", "activation_bytes": _bytes(s.total_activation_bytes),
              "input": "x".join(str(v) for v in t.input.shape[1:])}
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    page = environment.from_string(PAGE_TEMPLATE).render(
        title=title or f"{type(t.model).__name__}: the math of one pass", subtitle=subtitle, photo=photo_src,
        photo_width=photo.width, photo_height=photo.height, probs=probs, totals=totals, layers=layers,
        extras=extras, loss=fmt(t.loss), target=names[int(t.target[0])], data_json=payload,
        model_name=type(t.model).__name__)
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out_dir) for f in files)
    return {"path": path, "bytes": size, "html_bytes": os.path.getsize(path),
            "seconds": time.perf_counter() - started}
