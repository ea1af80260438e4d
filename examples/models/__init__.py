"""The networks of the course, by name: ``models.create("resnet18", num_classes=2)``.

Every module of this package that defines a module-level ``MODELS`` dict
(``{"registry name": factory}``, ``factory(num_classes=..., **options) -> nn.Module``)
contributes its networks; the registry collects them the first time it is asked
(``names()``, ``create()``), so importing one model module (``from tinynet.models.vgg import VGG``)
does not import the others.

    >>> import tinynet.models as models
    >>> net = models.create("vgg16", num_classes=2, batch_norm=True)
    >>> models.config_of(net)
    {'name': 'vgg16', 'num_classes': 2, 'options': {'batch_norm': True}}
    >>> again = models.from_config(models.config_of(net))      # the same architecture

A checkpoint stores ``config_of(model)`` beside ``model.state_dict()``; any
script then rebuilds the model from the checkpoint alone with
:func:`model_from_checkpoint` (no guessing of constructor arguments from
weight shapes).

The source lives in ``examples/models/`` beside the scripts that use it, and installs as
``tinynet.models`` (setup.py's ``package_dir``; a source tree attaches it the same way,
see ``tinynet/_subpackages.py``): scripts, tests, benchmarks and users all
``import tinynet.models``.  A new network is one module here with a ``MODELS`` dict.
"""
import importlib
import pkgutil

__all__ = ["create", "names", "config_of", "from_config", "checkpoint_entries", "model_from_checkpoint", "factories",
           "registry", "accepted_options", "CONFIG_KEY"]

#: where a checkpoint written with :func:`checkpoint_entries` keeps the model's registry config
CONFIG_KEY = "model_config"

_FACTORIES = None          # name -> factory, filled on first use
_SOURCES = {}              # name -> the module that defined it (for duplicate-name errors)


def _collect():
    """Import every module of the package and merge their ``MODELS`` dicts (once)."""
    global _FACTORIES
    if _FACTORIES is not None:
        return _FACTORIES
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as error:      # name the file: the registry imports every module of the package
            raise ImportError(f"the model registry could not import tinynet.models.{info.name} "
                              f"({info.name}.py): {type(error).__name__}: {error}") from error
        table = getattr(module, "MODELS", None)
        if table is None:          # a helper module (tables, comparisons), not a model family
            continue
        if not isinstance(table, dict):
            raise TypeError(f"tinynet.models.{info.name}.MODELS must be a dict of name -> factory, "
                            f"got {type(table).__name__}")
        for name, factory in table.items():
            if name != name.lower() or not callable(factory):
                raise TypeError(f"tinynet.models.{info.name}.MODELS[{name!r}]: registry names are lower case "
                                f"and map to a callable factory")
            if name in found:
                raise ValueError(f"model name {name!r} is defined twice: in tinynet.models.{_SOURCES[name]} "
                                 f"and in tinynet.models.{info.name}")
            found[name] = factory
            _SOURCES[name] = info.name
    _FACTORIES = found
    return _FACTORIES


def names():
    """The registry names, sorted: ``['alexnet', 'googlenet', 'lenet5', ...]``."""
    return sorted(_collect())


def factories():
    """A copy of the name -> factory table."""
    return dict(_collect())


def registry():
    """The live name -> factory table: add an entry to train a network of your own with the
    scripts (``models.registry()["mynet"] = MyNet``; ``--model mynet``)."""
    return _collect()


def accepted_options(name):
    """The keyword options ``create(name, ...)`` takes besides num_classes (None: any keyword)."""
    table = _collect()
    if name not in table:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(table))}")
    return _accepted_options(table[name])


def create(name, num_classes=1000, **options):
    """Build the network registered as ``name``; the model remembers its name and arguments.

    ``options`` go to the family's constructor (``batch_norm=True`` for VGG,
    ``aux_logits=False`` for GoogLeNet...).  The result carries
    ``config_of(model)`` so that a checkpoint can name what it holds.
    """
    table = _collect()
    key = name.lower() if isinstance(name, str) else name
    if key not in table:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(table))}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"create({name!r}): num_classes must be a positive int, got {num_classes!r}")
    for option, value in options.items():
        if not _is_plain(value):
            raise TypeError(f"create({name!r}): option {option}={value!r} is not a plain value "
                            f"(number, string, bool, None, or a list/tuple/dict of them), so a "
                            f"checkpoint could not record it")
    factory = table[key]
    accepted = _accepted_options(factory)
    unknown = [option for option in options if accepted is not None and option not in accepted]
    if unknown:
        raise TypeError(f"create({name!r}): unknown option(s) {', '.join(unknown)}; {key} accepts "
                        f"{', '.join(sorted(accepted)) or 'no options'} besides num_classes")
    model = factory(num_classes=num_classes, **options)
    # a plain attribute (not a parameter or module): Module.__setattr__ just stores it
    model.registry_config = {"name": key, "num_classes": num_classes, "options": dict(options)}
    return model


def config_of(model):
    """``{'name': ..., 'num_classes': ..., 'options': {...}}`` of a model built by :func:`create`."""
    config = getattr(model, "registry_config", None)
    if config is None:
        raise ValueError(f"config_of: this {type(model).__name__} was not built by models.create(), so "
                         f"its registry name and arguments are unknown; build it with "
                         f"models.create(name, num_classes=..., **options)")
    return {"name": config["name"], "num_classes": config["num_classes"], "options": dict(config["options"])}


def from_config(config):
    """Rebuild a model (fresh weights) from :func:`config_of`'s dict (e.g. read from a checkpoint)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"from_config: expected a dict with 'name', 'num_classes' and 'options' "
                         f"(models.config_of's result), got {config!r}")
    options = dict(config.get("options") or {})
    # a checkpoint stores tuples and lists as written; constructors accept both
    return create(config["name"], num_classes=int(config.get("num_classes", 1000)), **options)


def checkpoint_entries(model):
    """``{'model_config': config_of(model), 'model': model.state_dict()}``: merge into a checkpoint."""
    return {CONFIG_KEY: config_of(model), "model": model.state_dict()}


def model_from_checkpoint(checkpoint, state_key="model"):
    """Rebuild and load the model of a checkpoint (a path or a dict from ``tinynet.load``).

    The checkpoint must hold ``checkpoint['model_config']`` (see
    :func:`checkpoint_entries`) and the state dict under ``state_key``.
    """
    import tinynet

    state = tinynet.load(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    if CONFIG_KEY not in state:
        raise ValueError(f"model_from_checkpoint: the checkpoint has no {CONFIG_KEY!r} entry (keys: "
                         f"{sorted(state)}); write it with models.checkpoint_entries(model)")
    model = from_config(state[CONFIG_KEY])
    model.load_state_dict(state[state_key])
    return model


def _is_plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _accepted_options(factory):
    """The keyword options a factory takes (without num_classes), or None if it takes **kwargs."""
    import inspect

    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name != "num_classes"}
