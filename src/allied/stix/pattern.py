"""The STIX 2.1 patterning language (specification section 9), parsed by hand.

Every imported indicator's pattern is validated here and the matching engine compiles the tree
built here, so this module is the one home of the grammar. It is a regex tokenizer plus recursive
descent rather than the ANTLR grammar ``stix2-patterns`` runs, because that manages a few thousand
patterns a second and imports arrive by the hundred thousand.

Validity follows ``stix2patterns.validator.run_validator(p, stix_version='2.1')``: its grammar
(``NOT EXISTS``, ``==`` and ``<>``, comments, Unicode spaces), its duplicate-qualifier rule and its
hash-value check. Deliberate differences:

* comparisons joined by AND must be satisfiable by one object type (spec 9.5, which the validator
  skips: cti-pattern-validator issue 83); as in ``stix2``, AND intersects the types its operands
  could match and OR unites them;
* hash values are checked per member of an IN set, and not for LIKE and MATCHES, whose operands
  are patterns; MD6 lengths and trailing newlines are checked strictly;
* inputs that crash the validator get a verdict: an empty pattern is refused, a negative list
  index or a list index straight after ``hashes`` is accepted;
* integers over 4300 digits, floats that overflow, and nesting (parentheses, or qualifiers in
  a chain) over 100 deep are refused, so neither this parser nor tree walkers run out of stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import ClassVar, Literal, NoReturn, TypeAlias

from allied.errors import PatternError

__all__ = [
    "STAR", "Binary", "BoolOp", "Comparison", "ComparisonExpr", "ComparisonOp", "Constant",
    "Hex", "ObjectPath", "Observation", "ObservationExpr", "ObservationOp", "PathStep", "Pattern",
    "Qualified", "Qualifier", "Repeats", "Star", "StartStop", "Timestamp", "Value", "Within",
    "parse_pattern",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Tagged:
    """A typed constant kept as its source text: hashable, printable, lossless."""

    value: str
    _prefix: ClassVar[str] = ""

    def __str__(self) -> str:
        return f"{self._prefix}'{self.value}'"


class Timestamp(_Tagged):
    """``t'...'``; text keeps sub-second digits and leap seconds that datetime would lose."""

    __slots__ = ()
    _prefix = "t"


class Binary(_Tagged):
    """``b'...'`` as its base64 text."""

    __slots__ = ()
    _prefix = "b"


class Hex(_Tagged):
    """``h'...'`` as its hex digits."""

    __slots__ = ()
    _prefix = "h"


class Star(Enum):
    """The ``[*]`` list index: its own type, so it is never mistaken for a key named ``*``."""

    STAR = "*"


STAR = Star.STAR
Constant: TypeAlias = str | bool | int | float | Timestamp | Binary | Hex
Value: TypeAlias = Constant | tuple[Constant, ...]
PathStep: TypeAlias = str | int | Star
ComparisonOp = Literal[
    "=", "!=", "<", "<=", ">", ">=", "IN", "LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET", "EXISTS"
]


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """Property names are stored unquoted (quoting is syntax); ``__str__`` re-quotes as needed."""

    object_type: str
    steps: tuple[PathStep, ...]

    def __str__(self) -> str:
        parts = [self.object_type, ":"]
        for n, step in enumerate(self.steps):
            if isinstance(step, str):
                parts.append(_key_text(step) if n == 0 else "." + _key_text(step))
            else:
                parts.append("[*]" if step is STAR else f"[{step}]")
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One test of one property; ``value`` is None only for EXISTS."""

    object_path: ObjectPath
    op: ComparisonOp
    negated: bool = False
    value: Value | None = None

    def __str__(self) -> str:
        neg = "NOT " if self.negated else ""
        if self.op == "EXISTS":
            return f"{neg}EXISTS {self.object_path}"
        return f"{self.object_path} {neg}{self.op} {_value_text(self.value)}"


class _Chain:
    """Compares and hashes by walking the left spine: a long OR list is a left-deep chain
    hundreds of levels deep, which the recursive generated methods cannot handle."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        a: object = self
        b: object = other
        while isinstance(a, (BoolOp, ObservationOp)) and isinstance(b, (BoolOp, ObservationOp)):
            if type(a) is not type(b) or a.op != b.op or a.right != b.right:
                return False
            a, b = a.left, b.left
        chains = isinstance(a, (BoolOp, ObservationOp)) or isinstance(b, (BoolOp, ObservationOp))
        return not chains and a == b

    def __hash__(self) -> int:
        parts: list[object] = []
        node: object = self
        while isinstance(node, (BoolOp, ObservationOp)):
            parts += (type(node), node.op, node.right)
            node = node.left
        return hash((*parts, node))


@dataclass(frozen=True, slots=True, eq=False)
class BoolOp(_Chain):
    """Binary and left-associative, the shape the grammar gives ``a AND b AND c``."""

    op: Literal["AND", "OR"]
    left: ComparisonExpr
    right: ComparisonExpr

    def __str__(self) -> str:
        return _chain_text(self, {"OR": 1, "AND": 2})


@dataclass(frozen=True, slots=True)
class Observation:
    """A bracketed comparison expression: everything in it is matched against one object."""

    comparison: ComparisonExpr

    def __str__(self) -> str:
        return f"[{self.comparison}]"


@dataclass(frozen=True, slots=True, eq=False)
class ObservationOp(_Chain):
    op: Literal["AND", "OR", "FOLLOWEDBY"]
    left: ObservationExpr
    right: ObservationExpr

    def __str__(self) -> str:
        return _chain_text(self, {"FOLLOWEDBY": 1, "OR": 2, "AND": 3})


@dataclass(frozen=True, slots=True)
class Within:
    seconds: float

    def __str__(self) -> str:
        s = self.seconds
        return f"WITHIN {int(s) if s.is_integer() else _float_text(s)} SECONDS"


@dataclass(frozen=True, slots=True)
class Repeats:
    times: int

    def __str__(self) -> str:
        return f"REPEATS {self.times} TIMES"


@dataclass(frozen=True, slots=True)
class StartStop:
    """Bounds as RFC 3339 text, without the ``t''`` wrapper."""

    start: str
    stop: str

    def __str__(self) -> str:
        return f"START t'{self.start}' STOP t'{self.stop}'"


Qualifier: TypeAlias = Within | Repeats | StartStop


@dataclass(frozen=True, slots=True)
class Qualified:
    """A qualifier on the expression before it; ``[a] WITHIN 1 SECONDS REPEATS 2 TIMES`` nests."""

    expr: ObservationExpr
    qualifier: Qualifier

    def __str__(self) -> str:
        # The validator refuses a repeated qualifier kind on ``[...]`` but not on ``(...)``, and
        # parentheses are not kept in the tree, so anything but a bare observation gets them back.
        inner = str(self.expr) if isinstance(self.expr, Observation) else f"({self.expr})"
        return f"{inner} {self.qualifier}"


@dataclass(frozen=True, slots=True)
class Pattern:
    root: ObservationExpr

    def __str__(self) -> str:
        return str(self.root)


ComparisonExpr: TypeAlias = Comparison | BoolOp
ObservationExpr: TypeAlias = Observation | ObservationOp | Qualified


def _chain_text(node: BoolOp | ObservationOp, prec: dict[str, int]) -> str:
    """Minimal parentheses; walks the left spine so a long OR list does not recurse per item."""
    rights: list[object] = []
    left: object = node
    while isinstance(left, (BoolOp, ObservationOp)) and type(left) is type(node):
        if left.op != node.op:
            break
        rights.append(left.right)
        left = left.left

    def text(operand: object, strict: bool) -> str:
        inner = 9
        if isinstance(operand, (BoolOp, ObservationOp)) and type(operand) is type(node):
            inner = prec[operand.op]
        own = prec[node.op]
        return f"({operand})" if inner < own or (strict and inner == own) else str(operand)

    return f" {node.op} ".join([text(left, False), *(text(r, True) for r in reversed(rights))])


def _float_text(value: float) -> str:
    """Positional notation: the grammar has no exponent, and the '.' keeps it a float."""
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def string_literal(value: str) -> str:
    """``value`` as a pattern's string literal (quotes and backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _key_text(key: str) -> str:
    return key if _PROP_NAME.fullmatch(key) and key not in _RESERVED else string_literal(key)


def _value_text(value: Value | None) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_value_text(v) for v in value) + ")"
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return _float_text(value) if isinstance(value, float) else str(value)


# The tokenizer is one findall over one regex, which yields every token's text; positions are
# recomputed (with finditer) only to report an error. Alternatives are ordered so the first match
# is also the longest, the ANTLR lexer's rule, and any stray character is a token of its own.
_WS_CHARS = " \t\r\n\x0b\x0c\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    map(chr, range(0x2000, 0x200B))
)
_WS = f"[{_WS_CHARS}]"
_B64 = "[A-Za-z0-9+/]"
_TIMESTAMP = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?Z"
)
_TOKEN_RE = re.compile(
    rf"(?:{_WS}++|/\*(?s:.)*?\*/|//[^\r\n]*+)*+("
    rf"t'{_TIMESTAMP}'|h'(?:[0-9A-Fa-f]{{2}})*+'"
    rf"|b'(?:{_B64}{{4}})*(?:{_B64}{{4}}|{_B64}{{3}}=|{_B64}{{2}}==)'"
    r"|[thb]'"  # a malformed t/h/b constant, only ever reported
    r"|'[^'\\]*+(?:\\['\\][^'\\]*+)*+'"
    r"|[+-]?(?:[0-9]*\.[0-9]+|0|[1-9][0-9]*)"
    r"|[A-Za-z_][A-Za-z0-9_-]*+"
    r"|==|!=|<>|<=|>="
    r"|(?s:.)|\Z)"
)
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PROP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNESCAPE = re.compile(r"\\(['\\])")
_KEYWORDS = "AND OR NOT FOLLOWEDBY LIKE MATCHES ISSUPERSET ISSUBSET EXISTS LAST IN START STOP"
_RESERVED = frozenset((_KEYWORDS + " SECONDS true false WITHIN REPEATS TIMES").split())
_NUMBER_START = frozenset("0123456789+-.")
_OPS: dict[str, ComparisonOp] = {
    "=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
    "IN": "IN", "LIKE": "LIKE", "MATCHES": "MATCHES", "ISSUBSET": "ISSUBSET",
    "ISSUPERSET": "ISSUPERSET",
}  # fmt: skip
_STRING_ONLY = frozenset({"LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"})
_QUALIFIER_NAMES = {"WITHIN": "WITHIN", "REPEATS": "REPEATS", "START": "START/STOP"}
_BAD_LITERALS = {
    "t'": "invalid timestamp: expected t'YYYY-MM-DDThh:mm:ss[.s]Z'",
    "h'": "invalid hex constant: expected an even number of hex digits",
    "b'": "invalid binary constant: expected base64",
}
_MAX_DEPTH = 100
_HASHES = {
    name.replace("-", ""): (re.compile(rx).fullmatch, name)
    for name, rx in [
        ("MD5", "[a-fA-F0-9]{32}"), ("RIPEMD-160", "[a-fA-F0-9]{40}"),
        ("MD6", "[a-fA-F0-9]{32}|[a-fA-F0-9]{40}|[a-fA-F0-9]{56}|[a-fA-F0-9]{64}"
                "|[a-fA-F0-9]{96}|[a-fA-F0-9]{128}"),
        ("SHA-1", "[a-fA-F0-9]{40}"), ("SHA-224", "[a-fA-F0-9]{56}"),
        ("SHA-256", "[a-fA-F0-9]{64}"), ("SHA-384", "[a-fA-F0-9]{96}"),
        ("SHA-512", "[a-fA-F0-9]{128}"), ("SHA3-224", "[a-fA-F0-9]{56}"),
        ("SHA3-256", "[a-fA-F0-9]{64}"), ("SHA3-384", "[a-fA-F0-9]{96}"),
        ("SHA3-512", "[a-fA-F0-9]{128}"), ("SSDEEP", "[a-zA-Z0-9/+:.]{1,128}"),
        ("WHIRLPOOL", "[a-fA-F0-9]{128}"),
    ]
}  # fmt: skip


#: The shapes most shared indicators have, ``[ipv4-addr:value = '198.51.100.7']``,
#: ``[file:hashes.'SHA-256' = '...']`` and OR-lists of such equalities, are recognised by
#: one regex match, because imports meet them millions of times. Anything else, or anything
#: the checks below would refuse, takes the full parser, which reports the fault; a property
#: test holds both to the same result.
_STEP = r"(?:[A-Za-z_][A-Za-z0-9_]*|'[A-Za-z0-9_-]+')"
_PATH = rf"[a-z][a-z0-9-]*:{_STEP}(?:\.{_STEP})*"
_VALUE = r"'(?:[^'\\]|\\['\\])*'"
_SIMPLE = re.compile(rf"\[{_PATH} = {_VALUE}(?: OR {_PATH} = {_VALUE})*\]")
_EQUALS = re.compile(rf"([a-z][a-z0-9-]*):({_STEP}(?:\.{_STEP})*) = ({_VALUE})")
#: What :func:`check_pattern` validates without the parser: also ISSUBSET, and OR between
#: observations of such comparisons.
_COMPARISON = rf"{_PATH} (?:=|ISSUBSET) {_VALUE}"
_OBSERVATION = rf"\[{_COMPARISON}(?: OR {_COMPARISON})*\]"
_CHECKABLE = re.compile(rf"{_OBSERVATION}(?: OR {_OBSERVATION})*")
_COMPARED = re.compile(rf"([a-z][a-z0-9-]*):({_STEP}(?:\.{_STEP})*) (?:=|ISSUBSET) ({_VALUE})")


def parse_pattern(text: str) -> Pattern:
    """Parse and validate ``text``, raising :class:`PatternError` at the first fault."""
    if _SIMPLE.fullmatch(text) is not None:
        fast = _equalities(text)
        if fast is not None:
            return fast
    return _parse_full(text)


def check_pattern(text: str) -> None:
    """Validate ``text`` like :func:`parse_pattern`, without building the tree when the
    pattern has one of the common shapes: what an import needs, millions of times."""
    if _CHECKABLE.fullmatch(text) is None or not all(
        _equality_valid(kind, dotted, quoted) for kind, dotted, quoted in _COMPARED.findall(text)
    ):
        _parse_full(text)


def _equality_valid(kind: str, dotted: str, quoted: str) -> bool:
    """What the parser checks of a fast-path equality: no reserved word where a name goes,
    and a well-formed digest where a known hash is compared."""
    names = dotted.split(".")
    if kind in _RESERVED or any(name in _RESERVED for name in names):
        return False
    if "hashes" in dotted and any(name.strip("'") == "hashes" for name in names):
        check = _HASHES.get(names[-1].strip("'").upper().replace("-", ""))
        if check is not None and not check[0](quoted[1:-1].replace("'", "")):
            return False
    return True


def _equalities(text: str) -> Pattern | None:
    expr: ComparisonExpr | None = None
    for kind, dotted, quoted in _EQUALS.findall(text, 1, len(text) - 1):
        if not _equality_valid(kind, dotted, quoted):
            return None
        body = quoted[1:-1]
        steps = tuple(step.strip("'") for step in dotted.split("."))
        value = _UNESCAPE.sub(r"\1", body) if "\\" in body else body
        comparison = Comparison(ObjectPath(kind, steps), "=", False, value)
        expr = comparison if expr is None else BoolOp("OR", expr, comparison)
    return None if expr is None else Pattern(Observation(expr))


def _parse_full(text: str) -> Pattern:
    tokens: list[str] = _TOKEN_RE.findall(text)
    tokens += ("", "", "")  # sentinels, so look-ahead never runs off the end
    parser = _Parser(text, tokens)
    root = parser.observations(0)
    if tokens[parser.i]:
        parser.fail("AND, OR, FOLLOWEDBY, a qualifier or the end")
    rest = text.lstrip(_WS_CHARS + "(")
    if rest[:1] != "[":  # only a comment can get here, and the validator refuses that
        position = len(text) - len(rest)
        raise PatternError("no comment may precede the first '['", pattern=text, position=position)
    return Pattern(root)


class _Parser:
    __slots__ = ("depth", "i", "text", "toks")
    _LEVELS: tuple[Literal["FOLLOWEDBY", "OR", "AND"], ...] = ("FOLLOWEDBY", "OR", "AND")

    def __init__(self, text: str, toks: list[str]) -> None:
        self.text = text
        self.toks = toks
        self.i = 0
        self.depth = 0

    def observations(self, level: int) -> ObservationExpr:
        """FOLLOWEDBY binds loosest, then OR, then AND, then qualifiers."""
        if level == 3:
            return self.qualified()
        op = self._LEVELS[level]
        left = self.observations(level + 1)
        while self.toks[self.i] == op:
            self.i += 1
            left = ObservationOp(op, left, self.observations(level + 1))
        return left

    def qualified(self) -> ObservationExpr:
        toks = self.toks
        expr: ObservationExpr
        bracketed = toks[self.i] == "["
        if bracketed:
            self.i += 1
            expr = Observation(self.comparisons())
        elif toks[self.i] == "(":
            self.enter()
            expr = self.observations(0)
            self.depth -= 1
        else:
            self.fail("'[' or '('")
        self.expect("]" if bracketed else ")")
        seen: set[str] = set()
        depth = self.depth
        while (keyword := toks[self.i]) in _QUALIFIER_NAMES:
            self.enter(advance=False)
            # Like the validator, refuse a repeated kind only directly on a bracketed observation.
            if bracketed and keyword in seen:
                self.fail(f"duplicate {_QUALIFIER_NAMES[keyword]} qualifier", exact=True)
            seen.add(keyword)
            expr = Qualified(expr, self.qualifier(keyword))
        self.depth = depth
        return expr

    def qualifier(self, keyword: str) -> Qualifier:
        self.i += 1
        tok = self.toks[self.i]
        if keyword == "START":
            start = self.timestamp()
            self.expect("STOP")
            return StartStop(start, self.timestamp())
        if not _is_number(tok) or tok[0] == "-" or (keyword == "REPEATS" and "." in tok):
            self.fail("a number of seconds" if keyword == "WITHIN" else "a whole number of times")
        if keyword == "WITHIN":
            seconds = Within(float(self.number(as_float=True)))
            self.expect("SECONDS")
            return seconds
        times = Repeats(int(self.number()))
        self.expect("TIMES")
        return times

    def timestamp(self) -> str:
        tok = self.toks[self.i]
        if len(tok) < 3 or not tok.startswith("t'"):
            self.fail("a timestamp t'...'")
        self.i += 1
        return tok[2:-1]

    def comparisons(self) -> ComparisonExpr:
        """OR binds looser than AND inside brackets."""
        left = self.conjunction()
        while self.toks[self.i] == "OR":
            self.i += 1
            left = BoolOp("OR", left, self.conjunction())
        return left

    def conjunction(self) -> ComparisonExpr:
        left = self.test()
        if self.toks[self.i] != "AND":
            return left
        types = _object_types(left)
        while self.toks[self.i] == "AND":
            at = self.i
            self.i += 1
            right = self.test()
            right_types = _object_types(right)
            if not types & right_types:
                names = " / ".join(sorted(types)), " / ".join(sorted(right_types))
                reason = "AND joins comparisons of different object types ({} and {})"
                self.fail(reason.format(*names), at, exact=True)
            types &= right_types
            left = BoolOp("AND", left, right)
        return left

    def test(self) -> ComparisonExpr:
        toks = self.toks
        tok = toks[self.i]
        if tok == "(":
            self.enter()
            expr = self.comparisons()
            self.expect(")")
            self.depth -= 1
            return expr
        negated = tok == "NOT"
        if toks[self.i + negated] == "EXISTS":
            self.i += 1 + negated
            return Comparison(self.path(), "EXISTS", negated)
        path = self.path()
        negated = toks[self.i] == "NOT"
        self.i += negated
        op = _OPS.get(toks[self.i])
        if op is None:
            tok = toks[self.i]
            if _TYPE_NAME.fullmatch(tok) and tok not in _RESERVED:
                self.fail(f"unknown operator '{tok}'", exact=True)
            self.fail("a comparison operator" + (", EXISTS goes first" if tok == "EXISTS" else ""))
        self.i += 1
        first = self.i
        value: Value
        if op == "IN":
            value = self.set_literal()
            members = range(first + 1, self.i - 1, 2)  # skip the parentheses and commas
        elif op in _STRING_ONLY:
            if toks[self.i][:1] != "'":
                self.fail(f"a string after {op}")
            value, members = self.constant(), range(first, first + 1)
        else:
            value, members = self.constant(), range(first, first + 1)
            if isinstance(value, bool) and op not in ("=", "!="):
                self.fail(f"an orderable constant after {op}", first)
        steps = path.steps
        if "hashes" in steps and op not in ("LIKE", "MATCHES") and isinstance(steps[-1], str):
            self.check_hash(steps[-1], members)
        return Comparison(path, op, negated, value)

    def check_hash(self, key: str, members: range) -> None:
        """Check the raw text of each compared constant, as the validator does."""
        check = _HASHES.get(key.upper().replace("-", "").replace("'", ""))
        if check is not None:
            for at in members:
                raw = self.toks[at].replace("'", "")
                if not check[0](raw):
                    self.fail(f"'{raw}' is not a valid {check[1]} hash", at, exact=True)

    def set_literal(self) -> tuple[Constant, ...]:
        self.expect("(")
        values = [] if self.toks[self.i] == ")" else [self.constant()]
        while values and self.toks[self.i] == ",":
            self.i += 1
            values.append(self.constant())
        self.expect(")")
        return tuple(values)

    def constant(self) -> Constant:
        tok = self.toks[self.i]
        lead = tok[:1]
        value: Constant
        if lead == "'" and len(tok) > 1:
            value = _unescape(tok)
        elif _is_number(tok):
            return self.number()
        elif tok == "true" or tok == "false":
            value = tok == "true"
        elif len(tok) > 2 and tok[1] == "'" and lead in "thb":
            body = tok[2:-1]
            value = Timestamp(body) if lead == "t" else Hex(body) if lead == "h" else Binary(body)
        else:
            self.fail("a constant")
        self.i += 1
        return value

    def number(self, *, as_float: bool = False) -> int | float:
        tok = self.toks[self.i]
        value: int | float
        if as_float or "." in tok:
            value = float(tok)
            if value in (float("inf"), float("-inf")):
                self.fail("number out of floating-point range", exact=True)
        else:
            try:
                value = int(tok)
            except ValueError:  # over sys.get_int_max_str_digits()
                self.fail("integer longer than 4300 digits", exact=True)
        self.i += 1
        return value

    def path(self) -> ObjectPath:
        toks = self.toks
        i = self.i
        object_type = toks[i]
        if not _TYPE_NAME.fullmatch(object_type) or object_type in _RESERVED:
            self.fail("an object path such as file:name")
        if toks[i + 1] != ":":
            self.fail("':' after the object type", i + 1)
        steps: list[PathStep] = [self.key(i + 2)]
        i += 3
        while True:
            tok = toks[i]
            if tok == ".":
                steps.append(self.key(i + 1))
                i += 2
            elif tok == "[":
                index = toks[i + 1]
                if index == "*":
                    steps.append(STAR)
                elif _is_number(index) and "." not in index:
                    self.i = i + 1
                    steps.append(int(self.number()))
                else:
                    self.fail("a list index (an integer or *)", i + 1)
                if toks[i + 2] != "]":
                    self.fail("']' after the list index", i + 2)
                i += 3
            else:
                self.i = i
                return ObjectPath(object_type, tuple(steps))

    def key(self, at: int) -> str:
        tok = self.toks[at]
        if tok[:1] == "'" and len(tok) > 1:
            return _unescape(tok)
        if not _PROP_NAME.fullmatch(tok) or tok in _RESERVED:
            self.fail("a property name (quote keywords and names with hyphens)", at)
        return tok

    def enter(self, advance: bool = True) -> None:
        """Bound nesting, so neither this parser nor code walking the tree runs out of stack."""
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail(f"nested more than {_MAX_DEPTH} deep", exact=True)
        self.i += advance

    def expect(self, tok: str) -> None:
        if self.toks[self.i] != tok:
            self.fail(f"'{tok}'")
        self.i += 1

    def fail(self, what: str, at: int | None = None, *, exact: bool = False) -> NoReturn:
        """Raise at token ``at``: ``what`` is what was expected there, or the reason if exact."""
        at = self.i if at is None else at
        starts = [m.start(1) for m in _TOKEN_RE.finditer(self.text)]
        position = starts[at] if at < len(starts) else len(self.text)
        tok = self.toks[at]
        reason = what if exact else f"expected {what}, found " + (repr(tok) if tok else "the end")
        if tok == "'":
            reason, position = _string_fault(self.text, position)
        elif tok in _BAD_LITERALS:
            reason = _BAD_LITERALS[tok]
        elif tok == '"':
            reason = "strings take single quotes"
        raise PatternError(reason, pattern=self.text, position=position)


def _is_number(tok: str) -> bool:
    lead = tok[:1]
    return lead in _NUMBER_START and (lead.isdigit() or len(tok) > 1)


def _unescape(tok: str) -> str:
    body = tok[1:-1]
    return _UNESCAPE.sub(r"\1", body) if "\\" in body else body


def _string_fault(text: str, start: int) -> tuple[str, int]:
    """Explain why the quote at ``start`` opens no valid string."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            if text[i + 1 : i + 2] not in ("'", "\\"):
                return f"invalid escape '{text[i : i + 2]}' (only \\' and \\\\ are allowed)", i
            i += 1
        i += 1
    return "unterminated string", start


def _object_types(expr: ComparisonExpr) -> frozenset[str]:
    """The object types that could satisfy ``expr``, folded post-order without recursion."""
    stack: list[tuple[ComparisonExpr, bool]] = [(expr, False)]
    results: list[frozenset[str]] = []
    while stack:
        node, ready = stack.pop()
        if isinstance(node, Comparison):
            results.append(frozenset((node.object_path.object_type,)))
        elif ready:
            right, left = results.pop(), results.pop()
            results.append(left & right if node.op == "AND" else left | right)
        else:
            stack += ((node, True), (node.right, False), (node.left, False))
    return results[0]
