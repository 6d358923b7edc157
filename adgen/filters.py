"""``audience.filter``: a small, restricted expression language over audience columns.

The text is parsed with Python's :mod:`ast` and every node is checked against a whitelist before
anything is evaluated (by adgen, against the DataFrame; nothing is ever passed to ``eval`` or
``DataFrame.query``). Grammar::

    expr       := expr "or" expr | expr "and" expr | "not" expr | "(" expr ")" | comparison
    comparison := value (op value)+          op: == != < <= > >= in, not in
                | value                      (a boolean column or method result)
    value      := column | literal | "[" literal, ... "]"
                | column ".isna()" | column ".notna()"
                | column ".str." method "(" literal, ... ")"
    method     := startswith | endswith | contains | lower | upper | strip | len
    column     := a column name that is a Python identifier (region, loyalty_tier)
    literal    := number | "text" | 'text' | True | False | None | -number

Examples: ``opted_in == True and region in ["north", "south"]``,
``not email.isna() and email.str.endswith("@example.com")``, ``18 <= age < 65``.
``contains`` matches plain text, never a regular expression. Anything else (``@`` names,
attribute access, other calls, subscripts, lambdas, dunders) is a :class:`CampaignError`.
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
STR_METHODS = ("startswith", "endswith", "contains", "lower", "upper", "strip", "len")
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
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        _check(node.operand, text)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE and not isinstance(op, ast.In | ast.NotIn):
                raise _refuse(op, text, f"the operator {type(op).__name__}")
        for part in (node.left, *node.comparators):
            _check(part, text)
    elif isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise _refuse(node, text, f"the name {node.id!r}")
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise _refuse(node, text, "this literal")
    elif isinstance(node, ast.List | ast.Tuple):
        for item in node.elts:
            if not isinstance(item, ast.Constant) and not (
                    isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub)
                    and isinstance(item.operand, ast.Constant)):
                raise _refuse(item, text, "a non-literal list item")
            _check(item, text)
    elif isinstance(node, ast.Call):
        _check_call(node, text)
    else:
        raise _refuse(node, text, f"{type(node).__name__.lower()} syntax")


def _check_call(node: ast.Call, text: str) -> None:
    func = node.func
    if (isinstance(func, ast.Attribute) and func.attr in ("isna", "notna")
            and isinstance(func.value, ast.Name)):
        column: ast.AST = func.value
        allowed_args = 0
    elif (isinstance(func, ast.Attribute) and func.attr in STR_METHODS
            and isinstance(func.value, ast.Attribute) and func.value.attr == "str"
            and isinstance(func.value.value, ast.Name)):
        column, allowed_args = func.value.value, 2
    else:
        raise _refuse(node, text, "this call")
    if node.keywords:
        raise _refuse(node, text, "a keyword argument")
    if len(node.args) > allowed_args:
        raise _refuse(node, text, f"{len(node.args)} arguments to .{func.attr}()")
    for arg in node.args:
        if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str | int):
            raise _refuse(arg, text, "a non-literal argument")
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
            except TypeError as exc:
                raise AudienceError(f"{self.where}: audience.filter {_short(self.text)} compares "
                                    f"values of different types ({exc})") from None
            result = step if result is True else (result & step)
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
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool)
    return bool(value)
