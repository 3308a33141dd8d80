"""
nanoGPT's configurator, with checks. Used as

    python train.py config/override_file.py --batch_size=32

Each argument is either a config file (a Python file whose module-level assignments override the defaults)
or --key=value (the value is read as a Python literal, or taken as a plain string). Unlike nanoGPT, a setting
that does not exist, or a value of the wrong type, is one clear error before anything runs.
"""

import ast
import dataclasses
import difflib
import os
import sys
import typing


class ConfigError(ValueError):
    pass


def _check_type(name, value, field_type, source):
    """Returns value converted to field_type where that is lossless (int -> float, list -> tuple), else raises."""
    if typing.get_origin(field_type) is typing.Union:  # Optional[bool]: None or a bool
        if value is None:
            return None
        field_type = next(t for t in typing.get_args(field_type) if t is not type(None))
    if field_type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if field_type is tuple:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, (list, tuple)):
            return tuple(value)
    if field_type is int and isinstance(value, bool):
        pass  # True is an int to Python, but not a count
    elif isinstance(value, field_type):
        return value
    raise ConfigError(f"{source}: {name} must be {field_type.__name__}, got {value!r} ({type(value).__name__})")


def _suggest(name, known):
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _where(config_class):
    """'TrainConfig in train.py': where a user reads the list of settings."""
    module = sys.modules.get(config_class.__module__)
    filename = os.path.basename(getattr(module, '__file__', '') or '')
    return f"{config_class.__name__} in {filename}" if filename else config_class.__name__


def read_config_file(path):
    """The settings a config file makes: it is run as Python; its names, without __builtins__ and imports."""
    namespace = {'__file__': os.path.abspath(path)}  # lets a config exec() a sibling config
    with open(path) as f:
        exec(compile(f.read(), path, 'exec'), namespace)
    return {name: value for name, value in namespace.items()
            if not name.startswith('_') and not isinstance(value, type(os))}


def load_config(config_class, args=(), overrides=None):
    """Builds config_class (a dataclass) from its defaults, then config files and --key=value in args, in order,
    then the overrides dict (for programmatic use, e.g. tests and speedup.py)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    values = {}

    def set_value(name, value, source):
        if name not in fields:
            raise ConfigError(f"{source}: unknown setting {name!r}{_suggest(name, fields)}; "
                              f"the settings are listed in {_where(config_class)}")
        values[name] = _check_type(name, value, hints[name], source)

    for arg in args:
        if not arg.startswith('--'):
            if '=' in arg or not arg.endswith('.py'):
                raise ConfigError(f"argument {arg!r}: expected a config file (config/x.py) or --key=value")
            if not os.path.isfile(arg):
                raise ConfigError(f"config file {arg!r} not found")
            for name, value in read_config_file(arg).items():
                set_value(name, value, arg)
        else:
            if '=' not in arg:
                raise ConfigError(f"argument {arg!r}: write --key=value")
            name, text = arg[2:].split('=', 1)
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text  # a plain string, e.g. --out_dir=out-x
            if name in fields and hints[name] is str and not isinstance(value, str):
                value = text  # --teacher=123 or --out_dir=1 are still strings
            set_value(name, value, arg)
    for name, value in (overrides or {}).items():
        set_value(name, value, 'overrides')
    return config_class(**values)
