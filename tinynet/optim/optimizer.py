"""Optimizer base: parameter groups, zero_grad, and a state dict of plain arrays."""
import numpy as np

from .. import backend


class Optimizer:
    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        for group in groups:
            group = dict(group)
            group["params"] = list(group["params"])
            for key, value in defaults.items():
                group.setdefault(key, value)
            self.param_groups.append(group)
        self.state = {}  # id(param) -> dict of arrays and counters

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad(set_to_none)

    def step(self):
        raise NotImplementedError

    def _parameters(self):
        for group in self.param_groups:
            yield from group["params"]

    def state_dict(self):
        """Hyper-parameters per group and per-parameter state keyed by the parameter's position."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        state = {}
        for index, p in enumerate(self._parameters()):
            if id(p) in self.state:
                state[str(index)] = {k: (backend.to_numpy(v) if hasattr(v, "shape") else v)
                                     for k, v in self.state[id(p)].items()}
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        parameters = list(self._parameters())
        self.state = {}
        for key, entry in state_dict["state"].items():
            p = parameters[int(key)]
            restored = {}
            for name, value in entry.items():
                if isinstance(value, np.ndarray) and value.ndim > 0:
                    if tuple(value.shape) != p.shape:
                        raise ValueError(f"optimizer state {key}.{name}: expected shape {p.shape}, "
                                         f"got {tuple(value.shape)}")
                    value = backend.to_device(value.astype(p.dtype), p.device)
                elif isinstance(value, np.ndarray):
                    value = value.item()
                restored[name] = value
            self.state[id(p)] = restored
