"""Build the one inline Lambda handler file (``index.py``) from the package's own module sources.

The bundle holds the standard-library core that the handlers import (found by following the imports of
:mod:`subminute.aws.handlers`), each module minified (parsed, docstrings dropped, unparsed) and the whole
set compressed, plus a small import hook that serves those modules as the ``subminute`` package. So the
Lambda runs the very controller code that runs locally; there is no second copy to keep in step.
A package gets its real ``__init__`` when something imports a name it defines (``from ..controller
import Controller``), else an empty one (most import backends the Lambda does not need).

CloudFormation caps a template given with ``--template-body`` at 51,200 bytes; cfn-lint (1.x) sets no
limit of its own on ``ZipFile`` (CloudFormation zips it and allows up to 4 MB), so the template's size
is what matters, and compression keeps the whole stack's template well under that cap.
"""

from __future__ import annotations

import ast
import base64
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError

__all__ = ["HANDLERS", "build_bundle", "bundle_key", "minify", "module_sources", "package_root", "unpack_bundle"]

# the handlers of the one bundle every function of the stack runs (handler ``index.<name>``): module:function
HANDLERS = {"controller_handler": "subminute.aws.handlers:controller_handler",
            "worker_handler": "subminute.aws.worker:worker_handler",
            "demo_handler": "subminute.aws.worker:demo_handler",
            "http_worker_handler": "subminute.aws.worker:http_worker_handler",
            "seed_handler": "subminute.aws.seed:handler"}
ALLOWED_THIRD_PARTY = ("boto3", "botocore")  # present in every Python Lambda runtime
_MARK = '_P = zlib.decompress(base64.b85decode("'
_UNPACK = '"), -15).decode().split("\\0")\n_S = dict(zip(_P[::2], _P[1::2]))\n'


def package_root() -> Path:
    """The directory holding the ``subminute`` package sources."""
    return Path(__file__).resolve().parents[1]


def _module_path(name: str) -> Path:
    parts = name.split(".")[1:]
    base = package_root().joinpath(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The ``subminute`` modules an ImportFrom pulls in (``from ..x import y`` may name module y)."""
    if node.level:
        is_package = _module_path(module).name == "__init__.py"  # a package's own level 1 is itself
        package = module.rsplit(".", node.level - 1)[0] if is_package and node.level > 1 else \
            module if is_package else module.rsplit(".", node.level)[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if not base.startswith("subminute"):
        return []
    found = [] if _module_path(base).name == "__init__.py" else [base]
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        if _module_path(candidate).exists() and _module_path(candidate).name != "__init__.py":
            found.append(candidate)
        elif not found or found[0] != base:  # a name the package itself defines: its real __init__ too
            found.insert(0, base)
    return found


def _imports(module: str, tree: ast.Module) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """(subminute modules, other modules) imported in ``tree``, each with whether it is imported at
    module level (a function-level import is lazy: an optional feature)."""
    top = {id(node) for node in tree.body}
    for statement in tree.body:  # imports under a module-level if/try are module-level too
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            top.discard(id(statement))  # for type checkers only: never imported at run time
        elif isinstance(statement, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(statement))
    ours: list[tuple[str, bool]] = []
    others: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        eager = id(node) in top
        if isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.startswith("subminute") else others).append((alias.name, eager))
        elif isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").startswith("subminute"):
                ours.extend((m, eager) for m in _resolve(module, node))
            else:
                others.append((node.module or "", eager))
    return ours, others


def _foreign(others: list[tuple[str, bool]]) -> list[str]:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return [name for name, eager in others
            if eager and name.split(".")[0] not in stdlib and name.split(".")[0] not in ALLOWED_THIRD_PARTY]


def module_sources(*entries: str) -> dict[str, str]:
    """Every ``subminute`` module the ``entries`` import at module level, by dotted name, with its real
    source text. Those must be standard library (or boto3/botocore): else ``ValueError``. Lazy
    (function-level) imports are not followed: name such a module in ``entries`` to include it."""
    sources: dict[str, str] = {}
    todo: list[tuple[str, str]] = [(entry, "") for entry in entries]
    while todo:
        name, by = todo.pop()
        if name in sources:
            continue
        text = _module_path(name).read_text(encoding="utf-8")
        ours, others = _imports(name, ast.parse(text))
        foreign = _foreign(others)
        if foreign:
            raise ValueError(f"{name} (imported by {by or 'the handlers'}) imports {foreign[0]}, "
                             "which a Lambda runtime does not have")
        sources[name] = text
        todo.extend((m, name) for m, eager in ours if eager and m not in sources)
    return {name: sources[name] for name in sorted(sources)}


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body.pop(0)
                if not body:
                    body.append(ast.Pass())


def _strip_signatures(tree: ast.AST) -> None:
    """Drop function annotations and shorten class-level ones to ``T`` (never evaluated: every module has
    ``from __future__ import annotations``; dataclasses and NamedTuples need a class-level annotation to
    exist, not what it says, except ``ClassVar`` and ``InitVar``, which stay)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None:
                    arg.annotation = None
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and not any(
                        word in ast.unparse(item.annotation) for word in ("ClassVar", "InitVar", "KW_ONLY")):
                    item.annotation = ast.Name("T")


def minify(source: str) -> str:
    """The same code, small: docstrings, comments, function annotations and ``__all__`` dropped
    (``ast``), then local names shortened and whitespace cut by python-minifier (pinned: the same sources
    give the same template). Class-level annotations stay (as ``T``), as dataclasses need them."""
    try:
        import python_minifier
    except ImportError:
        raise ConfigError("template", "python-minifier", "install it to build the template: pip install "
                          "'subminute[template]'") from None
    tree = ast.parse(source)
    _strip_docstrings(tree)
    _strip_signatures(tree)
    tree.body = [node for node in tree.body  # __all__ is for readers and linters
                 if not (isinstance(node, ast.Assign) and any(getattr(n, "id", "") == "__all__" for n in node.targets))]
    keep_class_annotations = python_minifier.RemoveAnnotationsOptions(
        remove_variable_annotations=True, remove_return_annotations=True, remove_argument_annotations=True,
        remove_class_attribute_annotations=False)
    text: str = python_minifier.minify(
        ast.unparse(tree), remove_annotations=keep_class_annotations, remove_literal_statements=True,
        rename_locals=True, rename_globals=False, hoist_literals=False, remove_asserts=False, remove_debug=False,
        constant_folding=False, remove_object_base=False, convert_posargs_to_args=False, combine_imports=True,
        remove_pass=True, preserve_shebang=False)
    return text + "\n"


def bundle_key(name: str) -> str:
    """The key of a module in a bundle: a package's ``__init__`` is ``package.__init__``."""
    return name + ".__init__" if _module_path(name).name == "__init__.py" else name


def _packed_modules(entries: tuple[str, ...]) -> dict[str, str]:
    modules = {bundle_key(name): minify(text) for name, text in module_sources(*entries).items()}
    packages = {".".join(name.split(".")[:i]) for name in modules for i in range(1, name.count(".") + 1)}
    for package in packages:
        modules.setdefault(package + ".__init__", "")
    return dict(sorted(modules.items()))


_LOADER = '''\
class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in _S or name + ".__init__" in _S:
            return importlib.util.spec_from_loader(name, self, is_package=name + ".__init__" in _S)
    def create_module(self, spec):
        pass
    def exec_module(self, module):
        key = module.__name__ + (".__init__" if module.__name__ + ".__init__" in _S else "")
        exec(compile(_S[key], "/var/task/subminute/" + key.replace(".", "/") + ".py", "exec"), module.__dict__)
sys.meta_path.insert(0, _Finder())
def _handler(ref):
    found = []
    def handler(event, context):
        if not found:
            module, _, name = ref.partition(":")
            found.append(getattr(importlib.import_module(module), name))
        return found[0](event, context)
    return handler
'''


def build_bundle(handlers: Mapping[str, str] | None = None) -> str:
    """The text of ``index.py``: the compressed modules, the import hook and one function per handler that
    imports its module when first called (so each Lambda function loads only what its handler needs)."""
    handlers = HANDLERS if handlers is None else handlers
    entries = tuple(sorted({ref.partition(":")[0] for ref in handlers.values()}))
    # name NUL source NUL name ...: no escapes to compress (Python source holds no NUL), raw deflate
    payload = "\0".join(part for item in _packed_modules(entries).items() for part in item).encode()
    packed = base64.b85encode(_deflate(payload)).decode()
    calls = "".join(f'{name} = _handler("{ref}")\n' for name, ref in handlers.items())
    return (
        "# made by `python -m subminute.aws.template` from subminute's sources; do not edit\nimport base64, importlib.abc, importlib.util, sys, zlib\n"
        + _MARK + packed + _UNPACK
        + _LOADER + calls
    )


def _deflate(payload: bytes) -> bytes:
    """Raw deflate data as small as zopfli makes it (pinned: the same bytes every time), about 1 KB less
    than zlib's best; the Lambda inflates it with the standard library's zlib."""
    try:
        from zopfli.zopfli import compress
    except ImportError:
        raise ConfigError("template", "zopfli", "install it to build the template: pip install "
                          "'subminute[template]'") from None
    wrapped = compress(payload, numiterations=15)  # a zlib stream: 2 header bytes, the data, a 4-byte check
    data: bytes = wrapped[2:-4]
    if zlib.decompress(data, -15) != payload:  # a broken compressor must not ship a Lambda that cannot start
        raise ConfigError("template", "zopfli", "its output does not inflate to the modules; reinstall it")
    return data


def unpack_bundle(bundle: str) -> dict[str, str]:
    """The modules inside a bundle text, by dotted name (for checks and for reading it)."""
    start = bundle.index(_MARK) + len(_MARK)
    end = bundle.index('"', start)
    parts = zlib.decompress(base64.b85decode(bundle[start:end]), -15).decode().split("\0")
    return dict(zip(parts[::2], parts[1::2]))
