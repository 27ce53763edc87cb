"""Enough of CEL (the Common Expression Language) to run the `x-kubernetes-validations` rules
of KServe's CRDs the way the API server does, for tests.

Covers: literals (int, double, string, bool, null, list), `self` and field selection, indexing,
`! - * / % + < <= > >= == != in && || ?:`, `has(x.f)`, `size(x)` / `x.size()`, `int()`,
`string()`, `duration()`, and the methods `startsWith endsWith contains matches` and the
macros `all exists exists_one filter map`. A rule using anything else raises `CelError` — the
caller reports it, so an unsupported rule is never taken for a passing one.

Errors at run time (a missing field outside `has()`, a type mismatch) raise `CelError` too: the
API server refuses an object whose rule fails to evaluate.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<raw>[rR](?:'''(?:.|\n)*?'''|\"\"\"(?:.|\n)*?\"\"\"|'[^'\n]*'|"[^"\n]*"))
  | (?P<str>'''(?:.|\n)*?'''|\"\"\"(?:.|\n)*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
  | (?P<num>\d+\.\d+|\d+)
  | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class CelError(Exception):
    pass


class _Missing:
    """A field that is not there: only `has()` may look at it."""


MISSING = _Missing()


def _tokens(text: str) -> list[tuple[str, object]]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise CelError(f"can't read {text[pos:pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group()
        if kind == "ws":
            continue
        if kind == "raw":
            quote = 3 if value[1:4] in ("'''", '"""') else 1
            out.append(("lit", value[1 + quote:-quote]))
        elif kind == "str":
            quote = 3 if value[:3] in ("'''", '"""') else 1
            out.append(("lit", bytes(value[quote:-quote], "utf-8").decode("unicode_escape")))
        elif kind == "num":
            out.append(("lit", float(value) if "." in value else int(value)))
        elif kind == "ident" and value in ("true", "false", "null"):
            out.append(("lit", {"true": True, "false": False, "null": None}[value]))
        else:
            out.append((kind, value))
    out.append(("end", None))
    return out


class _Parser:
    """Recursive descent over CEL's grammar; produces nested tuples."""

    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self, value=None):
        kind, token = self.tokens[self.pos]
        return token if value is None else (kind == "op" and token == value)

    def take(self, value=None):
        kind, token = self.tokens[self.pos]
        if value is not None and not (kind == "op" and token == value):
            raise CelError(f"expected {value!r}, found {token!r}")
        self.pos += 1
        return kind, token

    def parse(self):
        node = self.conditional()
        if self.tokens[self.pos][0] != "end":
            raise CelError(f"unexpected {self.tokens[self.pos][1]!r}")
        return node

    def conditional(self):
        node = self.binary(0)
        if self.peek("?"):
            self.take("?")
            then = self.conditional()
            self.take(":")
            return ("?", node, then, self.conditional())
        return node

    LEVELS = [("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-"),
              ("*", "/", "%")]

    def binary(self, level):
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while True:
            kind, token = self.tokens[self.pos]
            if token in self.LEVELS[level] and kind in ("op", "ident"):
                self.pos += 1
                node = (token, node, self.binary(level + 1))
            else:
                return node

    def unary(self):
        if self.peek("!"):
            self.take("!")
            return ("not", self.unary())
        if self.peek("-"):
            self.take("-")
            return ("neg", self.unary())
        return self.member()

    def member(self):
        node = self.primary()
        while True:
            if self.peek("."):
                self.take(".")
                _, name = self.take()
                if self.peek("("):
                    node = ("method", name, node, self.arguments())
                else:
                    node = ("field", node, name)
            elif self.peek("["):
                self.take("[")
                index = self.conditional()
                self.take("]")
                node = ("index", node, index)
            else:
                return node

    def arguments(self):
        self.take("(")
        args = []
        while not self.peek(")"):
            args.append(self.conditional())
            if not self.peek(")"):
                self.take(",")
        self.take(")")
        return args

    def primary(self):
        kind, token = self.take()
        if kind == "lit":
            return ("lit", token)
        if kind == "ident":
            if self.peek("("):
                return ("call", token, self.arguments())
            return ("name", token)
        if token == "(":
            node = self.conditional()
            self.take(")")
            return node
        if token == "[":
            items = []
            while not self.peek("]"):
                items.append(self.conditional())
                if not self.peek("]"):
                    self.take(",")
            self.take("]")
            return ("list", items)
        raise CelError(f"unexpected {token!r}")


def _size(value) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise CelError(f"size() of {type(value).__name__}")


def _duration(text) -> float:
    if not isinstance(text, str):
        raise CelError("duration() needs a string")
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            raise CelError(f"bad duration {text!r}")
        total += float(match[1]) * _DURATION_UNITS[match[2]]
        pos = match.end()
    if pos != len(text) or not text:
        raise CelError(f"bad duration {text!r}")
    return total


class _Eval:
    def __init__(self, variables: dict):
        self.variables = variables

    def value(self, node):
        result = self.run(node)
        if result is MISSING:
            raise CelError("no such key")
        return result

    def run(self, node):
        op = node[0]
        if op == "lit":
            return node[1]
        if op == "name":
            if node[1] not in self.variables:
                raise CelError(f"undeclared reference to {node[1]!r}")
            return self.variables[node[1]]
        if op == "field":
            target = self.value(node[1])
            if not isinstance(target, dict):
                raise CelError(f"field {node[2]!r} of {type(target).__name__}")
            return target.get(node[2], MISSING)
        if op == "index":
            target, index = self.value(node[1]), self.value(node[2])
            try:
                return target[index]
            except (KeyError, IndexError, TypeError):
                raise CelError("index out of range") from None
        if op == "list":
            return [self.value(item) for item in node[1]]
        if op == "not":
            return not self._bool(self.value(node[1]))
        if op == "neg":
            return -self.value(node[1])
        if op == "?":
            return self.value(node[2] if self._bool(self.value(node[1])) else node[3])
        if op == "&&":
            return self._bool(self.value(node[1])) and self._bool(self.value(node[2]))
        if op == "||":
            return self._bool(self.value(node[1])) or self._bool(self.value(node[2]))
        if op in ("==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%"):
            return self._binary(op, self.value(node[1]), self.value(node[2]))
        if op == "call":
            return self._call(node[1], node[2])
        if op == "method":
            return self._method(node[1], node[2], node[3])
        raise CelError(f"unsupported {op!r}")

    @staticmethod
    def _bool(value) -> bool:
        if not isinstance(value, bool):
            raise CelError(f"expected a bool, got {type(value).__name__}")
        return value

    @staticmethod
    def _binary(op, left, right):
        if op == "in":
            return left in right
        if op in ("==", "!="):
            return (left == right) == (op == "==")
        if bool in (type(left), type(right)):
            raise CelError(f"{op} on bool")
        try:
            return {"<": lambda: left < right, "<=": lambda: left <= right,
                    ">": lambda: left > right, ">=": lambda: left >= right,
                    "+": lambda: left + right, "-": lambda: left - right,
                    "*": lambda: left * right,
                    "/": lambda: left // right if isinstance(left, int) else left / right,
                    "%": lambda: left % right}[op]()
        except (TypeError, ZeroDivisionError) as exc:
            raise CelError(f"{op}: {exc}") from None

    def _call(self, name, args):
        if name == "has":
            if len(args) != 1 or args[0][0] != "field":
                raise CelError("has() needs a field selection")
            return self.run(args[0]) is not MISSING
        values = [self.value(arg) for arg in args]
        if name == "size" and len(values) == 1:
            return _size(values[0])
        if name == "int" and len(values) == 1:
            return int(values[0])
        if name == "string" and len(values) == 1:
            return str(values[0])
        if name == "duration" and len(values) == 1:
            return _duration(values[0])
        raise CelError(f"unsupported function {name}()")

    MACROS = ("all", "exists", "exists_one", "filter", "map")

    def _method(self, name, target_node, args):
        target = self.value(target_node)
        if name in self.MACROS:
            if len(args) != 2 or args[0][0] != "name":
                raise CelError(f"{name}() needs a variable and an expression")
            items = list(target) if isinstance(target, list | dict) else None
            if items is None:
                raise CelError(f"{name}() over {type(target).__name__}")
            results = [(item, _Eval({**self.variables, args[0][1]: item}).value(args[1]))
                       for item in items]
            if name == "map":
                return [result for _, result in results]
            if name == "filter":
                return [item for item, keep in results if self._bool(keep)]
            matches = sum(self._bool(result) for _, result in results)
            return {"all": matches == len(results), "exists": matches > 0,
                    "exists_one": matches == 1}[name]
        values = [self.value(arg) for arg in args]
        if name == "size" and not values:
            return _size(target)
        if name in ("startsWith", "endsWith", "contains", "matches") and len(values) == 1:
            if not isinstance(target, str) or not isinstance(values[0], str):
                raise CelError(f"{name}() on non-strings")
            return {"startsWith": target.startswith, "endsWith": target.endswith,
                    "contains": lambda v: v in target,
                    "matches": lambda v: re.search(v, target) is not None}[name](values[0])
        raise CelError(f"unsupported method {name}()")


def evaluate(rule: str, self_value):
    """The value of `rule` with `self` bound to `self_value`; CelError when it can't run."""
    return _Eval({"self": self_value}).value(_Parser(rule).parse())
