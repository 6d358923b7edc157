"""``audience.filter``: a small, restricted expression language over audience columns.

The text is parsed with Python's :mod:`ast` and every node is checked against a whitelist before
anything is evaluated (by adgen, against the DataFrame; nothing is ever passed to ``eval`` or
``DataFrame.query``). Grammar::

    expr       := expr "or" expr | expr "and" expr | "not" expr | "(" expr ")" | comparison
    comparison := value (op value)+          op: == != < <= > >= (18 <= age < 65)
                | value ("in" | "not in") "[" literal, ... "]"
                | value                      (a boolean column or method result)
    value      := column | literal
                | column ".isna()" | column ".notna()"
                | column ".str." method
    method     := startswith(text) | endswith(text) | contains(text) | strip() | strip(text)
                | lower() | upper() | len()
    column     := a column name that is a Python identifier (region, loyalty_tier)
    literal    := number | -number | text | True | False | None
    text       := "text" | 'text'

Examples: ``opted_in == True and region in ["north", "south"]``,
``not email.isna() and email.str.endswith("@example.com")``, ``18 <= age < 65``.
``contains`` matches plain text, never a regular expression. Anything else (``@`` names,
attribute access, other calls, subscripts, lambdas, dunders, a list anywhere but after ``in``,
a minus before anything but a number, a method given other arguments) is a
:class:`CampaignError` when the campaign loads.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import pandas as pd

from adgen.errors import AudienceError, CampaignError, listed

MAX_LENGTH = 2000
MAX_NODES = 400
STR_METHODS = {"startswith": (1, 1), "endswith": (1, 1), "contains": (1, 1), "strip": (0, 1),
               "lower": (0, 0), "upper": (0, 0), "len": (0, 0)}
"""The ``.str`` methods, and how many text arguments each takes: (at least, at most)."""
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def parse_filter(text: str) -> ast.Expression:
    """Parse and check ``text``; :class:`CampaignError` says what is not allowed, and where."""
    if len(text) > MAX_LENGTH:
        raise CampaignError(f"audience.filter is {len(text):,} characters long; keep it under "
                            f"{MAX_LENGTH:,}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise CampaignError(
            f"audience.filter {_short(text)}: not a valid filter expression ({exc.msg}, column "
            f"{exc.offset}); write e.g. region == \"north\" and spend > 10 (see the README's "
            "filter grammar; '@' names are not allowed)") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise CampaignError(f"audience.filter has {len(nodes)} parts; keep it under {MAX_NODES}")
    _check(tree.body, text)
    if not any(isinstance(node, ast.Name) for node in nodes):
        raise CampaignError(f"audience.filter {_short(text)} does not depend on any column; "
                            "compare a column, e.g. opted_in == True")
    return tree


def apply_filter(frame: pd.DataFrame, text: str, where: str) -> pd.DataFrame:
    """The rows of ``frame`` for which the filter ``text`` is true (missing values: false)."""
    tree = parse_filter(text)
    result = _Evaluator(frame, text, where).value(tree.body)
    if not isinstance(result, pd.Series):
        raise CampaignError(f"audience.filter {_short(text)} does not depend on any column; "
                            "compare a column, e.g. opted_in == True")
    if not (pd.api.types.is_bool_dtype(result) or result.dtype == object):
        raise CampaignError(f"audience.filter {_short(text)} is not a condition (it gives "
                            f"{result.dtype} values); compare it, e.g. spend > 10")
    return frame[result.fillna(False).astype(bool).to_numpy()]


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _refuse(node: ast.AST, text: str, what: str) -> CampaignError:
    return CampaignError(
        f"audience.filter {_short(text)}: {what} at column {getattr(node, 'col_offset', 0) + 1} "
        "is not allowed; filters may use columns, literals, comparisons, in / not in, "
        "and / or / not, .isna(), .notna() and .str." + "/.str.".join(STR_METHODS) + "()")


def _check(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        if not _is_number(node.operand):
            raise _refuse(node, text, "a minus sign before a non-number")
    elif isinstance(node, ast.Compare):
        _check_compare(node, text)
    elif isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise _refuse(node, text, f"the name {node.id!r}")
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise _refuse(node, text, "this literal")
    elif isinstance(node, ast.List | ast.Tuple):
        raise _refuse(node, text, "a list not after `in` / `not in`")
    elif isinstance(node, ast.Call):
        _check_call(node, text)
    else:
        raise _refuse(node, text, f"{type(node).__name__.lower()} syntax")


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
        and not isinstance(node.value, bool)


def _is_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub))


def _check_compare(node: ast.Compare, text: str) -> None:
    """Operators from the whitelist; a list only right after ``in`` / ``not in`` (and nothing
    after it), which take nothing else and need a column on their left."""
    _check(node.left, text)
    left = node.left
    for position, (op, right) in enumerate(zip(node.ops, node.comparators, strict=True)):
        membership = isinstance(op, ast.In | ast.NotIn)
        if type(op) not in _COMPARE and not membership:
            raise _refuse(op, text, f"the operator {type(op).__name__}")
        if membership:
            if not isinstance(right, ast.List | ast.Tuple) or position < len(node.ops) - 1:
                raise _refuse(right, text, '`in` without a list of literals after it (write '
                              'region in ["north", "south"])')
            if _is_literal(left):
                raise _refuse(left, text, "a literal before `in` (put a column there)")
            for item in right.elts:
                if not _is_literal(item):
                    raise _refuse(item, text, "a non-literal list item")
                _check(item, text)
        else:
            _check(right, text)
        left = right


def _check_call(node: ast.Call, text: str) -> None:
    func = node.func
    if (isinstance(func, ast.Attribute) and func.attr in ("isna", "notna")
            and isinstance(func.value, ast.Name)):
        column: ast.AST = func.value
        fewest = most = 0
    elif (isinstance(func, ast.Attribute) and func.attr in STR_METHODS
            and isinstance(func.value, ast.Attribute) and func.value.attr == "str"
            and isinstance(func.value.value, ast.Name)):
        column, (fewest, most) = func.value.value, STR_METHODS[func.attr]
    else:
        raise _refuse(node, text, "this call")
    if node.keywords:
        raise _refuse(node, text, "a keyword argument")
    for arg in node.args:
        if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str):
            raise _refuse(arg, text, "a non-literal argument (give a text in quotes)")
    if not fewest <= len(node.args) <= most:
        takes = "no argument" if most == 0 else "one text" if fewest == 1 else \
            "at most one text"
        raise _refuse(node, text, f"{len(node.args)} argument(s) to .{func.attr}() (it takes "
                      f"{takes})")
    _check(column, text)


class _Evaluator:
    def __init__(self, frame: pd.DataFrame, text: str, where: str) -> None:
        self.frame, self.text, self.where = frame, text, where

    def column(self, node: ast.Name) -> Any:
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in self.frame.columns:
            raise AudienceError(f"{self.where}: audience.filter uses column {node.id!r}, which "
                                f"the audience does not have (columns: "
                                f"{listed(self.frame.columns)})")
        return self.frame[node.id]

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.column(node)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand)
            if isinstance(node.op, ast.Not):
                return ~_truth(operand) if isinstance(operand, pd.Series) else not operand
            return -operand
        if isinstance(node, ast.BoolOp):
            parts = [_truth(self.value(v)) for v in node.values]
            combined = parts[0]
            for part in parts[1:]:
                combined = (combined & part) if isinstance(node.op, ast.And) else (combined | part)
            return combined
        if isinstance(node, ast.Compare):
            return self.compare(node)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        return self.call(node, node.func)

    def compare(self, node: ast.Compare) -> Any:
        left = self.value(node.left)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.value(right_node)
            try:
                if isinstance(op, ast.In | ast.NotIn):
                    if not isinstance(left, pd.Series) or not isinstance(right, list):
                        raise CampaignError(f"audience.filter {_short(self.text)}: use "
                                            "`column in [\"a\", \"b\"]`")
                    step = left.isin(right)
                    step = ~step if isinstance(op, ast.NotIn) else step
                else:
                    step = _COMPARE[type(op)](left, right)
            except (TypeError, ValueError) as exc:
                raise AudienceError(f"{self.where}: audience.filter {_short(self.text)} compares "
                                    f"values of different types ({exc})") from None
            result = step if result is True else (_truth(result) & _truth(step))
            left = right
        return result

    def call(self, node: ast.Call, func: ast.Attribute) -> Any:
        args = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if func.attr in ("isna", "notna"):
            assert isinstance(func.value, ast.Name)
            series = self.column(func.value)
            return series.isna() if func.attr == "isna" else series.notna()
        assert isinstance(func.value, ast.Attribute) and isinstance(func.value.value, ast.Name)
        series = self.column(func.value.value).astype("string")
        try:
            if func.attr == "contains":
                return series.str.contains(*args, regex=False)
            return getattr(series.str, func.attr)(*args)
        except TypeError as exc:
            raise CampaignError(f"audience.filter {_short(self.text)}: .str.{func.attr}() "
                                f"arguments: {exc}") from None


def _truth(value: Any) -> Any:
    """``value`` as true/false (a Series elementwise, missing values false)."""
    if isinstance(value, pd.Series):
        return value.astype(object).where(value.notna(), False).astype(bool)
    return bool(value)
