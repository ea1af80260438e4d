"""The course's comparison of AlexNet, VGG, GoogLeNet and ResNet, computed from the models.

``compare_models.py`` prints :func:`comparison_table`; :func:`notes_table` writes a model's layers in
the lecture notes' VGG-16 format (``CONV3-64: [224x224x64]  memory: 224*224*64=3.2M  params:
(3*3*3)*64 = 1,728``).  Every figure except the published errors comes from ``tinynet.summary`` of
the model at its paper input size, or (the depth) from the autograd graph of one forward pass.

What the columns count:

* **weight layers**: convolutions and FC layers on the longest path from the input to the output,
  the way the papers count depth (GoogLeNet's 22, ResNet's 18...152); shortcut projections and
  GoogLeNet's auxiliary heads are not on it.
* **conv layers**: every convolution the forward pass runs (inception branches and shortcut
  projections included).
* **parameters**: ``model.num_parameters()`` of the inference network (GoogLeNet without its
  training-only auxiliary heads).
* **multiply-adds**: the summary's total, per image: convolutions and FC layers.
* **activations**: the summary's total, per image in float32: the input and every layer's output
  (ReLU outputs counted separately, as a framework without in-place ReLU stores them), and the
  outputs of the model's own ops between layers: the sums of residual blocks and the channel
  concatenations of inception modules (the summary's ADD and CONCAT rows).
"""
from collections import OrderedDict

import tinynet
from tinynet import nn

#: name -> (label, registry name, options, paper input size, year, published top-5 error, where)
NETWORKS = OrderedDict([
    ("alexnet", ("AlexNet", "alexnet", {}, 227, 2012, "18.2%",
                 "Krizhevsky et al. Table 2: 1 CNN, ILSVRC-2012 val (7 CNNs, two of them pre-trained on the extra "
                 "ImageNet Fall 2011 data: 15.4% val, 15.3% test; 5 CNNs without it: 16.4% test)")),
    ("vgg16", ("VGG-16", "vgg16", {}, 224, 2014, "7.5%",
               "Simonyan & Zisserman Table 4: net D, multi-scale test, ILSVRC-2012 val")),
    ("vgg19", ("VGG-19", "vgg19", {}, 224, 2014, "7.5%",
               "Simonyan & Zisserman Table 4: net E, multi-scale test, ILSVRC-2012 val")),
    ("googlenet", ("GoogLeNet", "googlenet", {"aux_logits": False}, 224, 2014, "10.07%",
                   "Szegedy et al. Table 3: 1 model, 1 crop, val (7 models, 144 crops: 6.67% test)")),
    ("resnet18", ("ResNet-18", "resnet18", {}, 224, 2015, "-",
                  "He et al. Table 2 gives top-1 only (27.88%, 10-crop val)")),
    ("resnet34", ("ResNet-34", "resnet34", {}, 224, 2015, "7.46%",
                  "He et al. Table 3: option B, 10-crop, val")),
    ("resnet50", ("ResNet-50", "resnet50", {}, 224, 2015, "6.71%", "He et al. Table 3: 10-crop, val")),
    ("resnet101", ("ResNet-101", "resnet101", {}, 224, 2015, "6.05%", "He et al. Table 3: 10-crop, val")),
    ("resnet152", ("ResNet-152", "resnet152", {}, 224, 2015, "5.71%",
                   "He et al. Table 3: 10-crop, val (ensemble: 3.57% test)")),
])

#: a small input on which each family runs, for tracing the graph (depth does not depend on size)
PROBE_SIZE = {"alexnet": 67, "googlenet": 64}


def weight_layer_depth(model, input_size):
    """Longest chain of Conv2d/Linear layers from input to output, read off the autograd graph.

    Forward hooks mark the graph nodes that made the outputs of convolutions and FC layers; one
    forward pass (in eval mode, with gradients recorded) builds the graph; a walk from the output
    back to the input counts the marked nodes along the longest path.
    """
    marked = set()      # the graph nodes that made a convolution's or FC layer's output
    handles = [m.register_forward_hook(lambda mod, inputs, output: marked.add(output.creator))
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        x = tinynet.zeros(1, 3, input_size, input_size)
        with tinynet.enable_grad():
            output = model(x)
        # iterative post-order walk over the graph's nodes (ResNet-152's graph is deeper than
        # Python's recursion limit); a node reaches the nodes that made its inputs through them
        depth = {}
        stack = [(output.creator, False)]
        while stack:
            node, expanded = stack.pop()
            if node in depth:
                continue
            parents = [edge.creator for edge in node.inputs if edge is not None and edge.creator is not None]
            if not expanded and any(p not in depth for p in parents):
                stack.append((node, True))
                stack.extend((p, False) for p in parents if p not in depth)
                continue
            below = max((depth[p] for p in parents), default=0)
            depth[node] = below + (1 if node in marked else 0)
        return depth[output.creator]
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in training:
            object.__setattr__(module, "training", mode)


def describe(name, model=None):
    """One row of the comparison: a dict of the columns, computed from the model and its summary."""
    from tinynet import models

    label, registry_name, options, size, year, top5, source = NETWORKS[name]
    if model is None:
        tinynet.manual_seed(0)
        model = models.create(registry_name, **options)
    summary = tinynet.summary(model, (3, size, size))
    kinds = {type(m).__name__ for m in model.modules()}
    convs = [r for r in summary.rows if r.kind == "Conv2d"]
    kernels = sorted({(m.kernel_size[0], m.kernel_size[1]) for m in model.modules()
                      if isinstance(m, nn.Conv2d)}, reverse=True)
    fcs = [r.output_shape[-1] for r in summary.rows if r.kind == "Linear"]
    return OrderedDict([
        ("network", label), ("year", year), ("input", f"{size}x{size}"),
        ("weight layers", weight_layer_depth(model, PROBE_SIZE.get(name, 32))),
        ("conv layers", len(convs)),
        ("kernel sizes", ", ".join(f"{h}x{w}" for h, w in kernels)),
        ("FC layers", f"{len(fcs)}: {'-'.join(str(f) for f in fcs)}"),
        ("dropout", "Dropout" in kinds), ("LRN", "LocalResponseNorm" in kinds),
        ("BatchNorm", "BatchNorm2d" in kinds), ("inception", "Inception" in kinds),
        ("parameters", model.num_parameters()), ("multiply-adds", summary.total_mult_adds),
        ("activations", summary.total_activations), ("activation bytes", summary.total_activation_bytes),
        ("top-5 error", top5), ("source", source),
    ])


def _millions(n):
    return f"{n / 1e6:.1f}M"


def _gigas(n):
    return f"{n / 1e9:.2f}G"


def _mebibytes(n):
    return f"{n / 2**20:.1f} MiB"


def comparison_table(rows):
    """The rows of :func:`describe` as a text table, then the sources of the published errors."""
    columns = [("network", str), ("year", str), ("input", str), ("weight layers", str),
               ("conv layers", str), ("kernel sizes", str), ("FC layers", str),
               ("dropout", lambda v: "yes" if v else "-"), ("LRN", lambda v: "yes" if v else "-"),
               ("BatchNorm", lambda v: "yes" if v else "-"), ("inception", lambda v: "yes" if v else "-"),
               ("parameters", _millions), ("multiply-adds", _gigas), ("activation bytes", _mebibytes),
               ("top-5 error", str)]
    headers = {"weight layers": "depth", "conv layers": "convs", "kernel sizes": "kernels",
               "FC layers": "FC layers", "BatchNorm": "BN", "inception": "incept.",
               "parameters": "params", "multiply-adds": "mult-adds", "activation bytes": "activations",
               "top-5 error": "top-5 (published)"}
    cells = [[fmt(row[key]) for key, fmt in columns] for row in rows]
    titles = [headers.get(key, key) for key, _ in columns]
    widths = [max(len(t), *(len(c[i]) for c in cells)) for i, t in enumerate(titles)]
    right = {"parameters", "multiply-adds", "activation bytes", "weight layers", "conv layers"}

    def line(values):
        return "  ".join(v.rjust(w) if key in right else v.ljust(w)
                         for v, w, (key, _) in zip(values, widths, columns)).rstrip()

    out = [line(titles), "-" * len(line(["x" * w for w in widths]))] + [line(c) for c in cells]
    out.append("")
    out.append("params: parameters of the inference network; mult-adds, activations (float32, forward, "
               "every layer output incl. ReLUs, residual sums and concatenations): per image at the input size shown.")
    out.append("top-5 (published), as the papers report them (not measured here):")
    out += [f"  {row['network']}: {row['top-5 error']}  {row['source']}" for row in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- the notes' per-layer table
def short_count(n):
    """The notes' rounding: two significant digits with K or M (3,211,264 -> 3.2M, 802,816 -> 800K).

    Counts below 10,000 are written out (4096).
    """
    if n < 10_000:
        return str(n)
    digits = len(str(n)) - 2
    rounded = round(n, -digits)
    if rounded >= 1_000_000:
        return f"{rounded / 1e6:.1f}M".replace(".0M", "M") if rounded < 10_000_000 else f"{round(rounded / 1e6)}M"
    return f"{rounded // 1000}K"


def notes_table(model, input_shape):
    """The lecture notes' VGG-16 table for any model: input, convolutions, pools and FC layers.

    One line per layer, ``LABEL: [HxWxC]  memory: H*W*C=3.2M  params: (kh*kw*C)*O = N`` (weights
    only, as the notes count them; ReLU and dropout rows are left out, as in the notes), then the
    totals of the listed layers.  Returns ``(lines, totals)`` with totals the exact
    ``{'activations', 'bytes', 'weights', 'parameters', 'mult_adds'}`` behind the rounded figures.

    The notes print "TOTAL memory: 24M * 4 bytes ~= 93MB" for VGG-16, but their own rows add up
    to 15.2M values (58 MiB); this prints what the rows add up to.
    """
    summary = tinynet.summary(model, input_shape)
    lines, activations, weights = [], 0, 0
    last_map = None
    for row in summary.rows:
        shape = row.output_shape
        if row.kind == "Input":
            label = "INPUT"
        elif row.kind == "Conv2d":
            module = _module(model, row.name)
            label = f"CONV{module.kernel_size[0]}-{module.out_channels}"
        elif row.kind in ("MaxPool2d", "AvgPool2d"):
            label = f"POOL{_module(model, row.name).kernel_size[0]}"
        elif row.kind == "Linear":
            label = "FC"
        else:
            continue
        if len(shape) == 3:
            c, h, w = shape
            volume, memory = f"[{h}x{w}x{c}]", f"{h}*{w}*{c}={short_count(h * w * c)}"
            last_map = (h, w, c)
        else:
            volume, memory = f"[1x1x{shape[-1]}]", str(shape[-1])
        count, formula = 0, "0"
        if row.kind == "Conv2d":
            kh, kw = module.kernel_size
            count = module.weight.numel()
            formula = f"({kh}*{kw}*{module.in_channels // module.groups})*{module.out_channels} = {count:,}"
        elif row.kind == "Linear":
            module = _module(model, row.name)
            count = module.weight.numel()
            if last_map is not None and last_map[0] * last_map[1] * last_map[2] == module.in_features:
                fan_in = "*".join(str(v) for v in last_map)
            else:
                fan_in = str(module.in_features)
            formula = f"{fan_in}*{module.out_features} = {count:,}"
            last_map = None
        activations += row.activations
        weights += count
        lines.append(f"{label}: {volume}  memory: {memory}  params: {formula}")
    nbytes = activations * 4
    lines.append("")
    lines.append(f"TOTAL memory: {short_count(activations)} * 4 bytes ~= {round(nbytes / 2**20)}MB / image "
                 f"(only forward! ~*2 for bwd)")
    lines.append(f"TOTAL params: {round(model.num_parameters() / 1e6)}M parameters")
    totals = {"activations": activations, "bytes": nbytes, "weights": weights,
              "parameters": model.num_parameters(), "mult_adds": summary.total_mult_adds}
    return lines, totals


def _module(model, dotted):
    module = model
    for part in dotted.split("."):
        module = getattr(module, part)
    return module
