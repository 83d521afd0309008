"""Program-of-thought's calculator: the source of the graph `python` node that evaluates the
expression an llm node wrote (`agentmeta.agents.graph.POT_CODE` is this file's text).

It runs in the sandbox like any python node, as source without the package: it imports only the
standard library, and `tool(input, last)` is its entry point. It is a module so that linters, type
checkers and tests read it like the rest of the code.
"""

import ast
import math
import re

MAX_BITS = 12000
FUNCS = {
    "abs": abs, "round": round, "min": min, "max": max, "sum": sum, "int": int, "float": float,
    "sqrt": math.sqrt, "isqrt": math.isqrt, "floor": math.floor, "ceil": math.ceil,
    "trunc": math.trunc, "exp": math.exp, "log": math.log, "log2": math.log2, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "hypot": math.hypot, "fabs": math.fabs,
    "gcd": math.gcd, "lcm": math.lcm, "factorial": math.factorial, "comb": math.comb,
    "perm": math.perm, "pow": pow,
}
CONSTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
BIN = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b,
}
UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Not: lambda a: not a}
CMP = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
}


def number(v):
    if isinstance(v, (list, tuple)):
        return [number(x) for x in v]
    if not isinstance(v, (int, float)):
        raise ValueError("only numbers are allowed, got " + type(v).__name__)
    if isinstance(v, int) and v.bit_length() > MAX_BITS:
        raise ValueError("number too large")
    return v


def big(x):
    return isinstance(x, int) and not isinstance(x, bool) and x.bit_length()


def check(op, a, b):
    pow_big = op is ast.Pow and isinstance(b, (int, float)) and abs(b) > 1
    if pow_big and (isinstance(a, (list, tuple)) or max(big(a) or 1, 1) * abs(b) > MAX_BITS):
        raise ValueError("power too large")
    if op is ast.Mult and (big(a) or 0) + (big(b) or 0) > MAX_BITS:
        raise ValueError("product too large")


def ev(node, depth=0):
    if depth > 60:
        raise ValueError("expression nested too deeply")
    d = depth + 1
    if isinstance(node, ast.Expression):
        return ev(node.body, d)
    if isinstance(node, ast.Constant):
        return number(node.value)
    if isinstance(node, ast.Name) and node.id in CONSTS:
        return CONSTS[node.id]
    math_attr = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math"
    if math_attr and node.attr in CONSTS:
        return CONSTS[node.attr]
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return number(UNARY[type(node.op)](ev(node.operand, d)))
    if isinstance(node, ast.BinOp) and type(node.op) in BIN:
        a, b = ev(node.left, d), ev(node.right, d)
        if isinstance(a, list) or isinstance(b, list):
            raise ValueError("arithmetic on a list")
        check(type(node.op), a, b)
        return number(BIN[type(node.op)](a, b))
    if isinstance(node, ast.Compare) and all(type(o) in CMP for o in node.ops):
        left = ev(node.left, d)
        for op, right in zip(node.ops, node.comparators, strict=True):
            value = ev(right, d)
            if not CMP[type(op)](left, value):
                return False
            left = value
        return True
    if isinstance(node, ast.BoolOp):
        values = [ev(v, d) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.IfExp):
        return ev(node.body, d) if ev(node.test, d) else ev(node.orelse, d)
    if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) <= 1000:
        return [ev(x, d) for x in node.elts]
    if isinstance(node, ast.Call) and not node.keywords:
        f = node.func
        name = f.id if isinstance(f, ast.Name) else None
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "math":
            name = f.attr
        if name in FUNCS:
            args = [ev(a, d) for a in node.args]
            if name == "pow":
                if len(args) != 2:
                    raise ValueError("pow takes two arguments here")
                check(ast.Pow, args[0], args[1])
            if name in ("factorial", "comb", "perm") and any(abs(x) > 3000 for x in args if big(x)):
                raise ValueError(name + " argument too large")
            return number(FUNCS[name](*args))
        raise ValueError("function not allowed: " + (name or ast.unparse(f)[:60]))
    raise ValueError(type(node).__name__ + " is not allowed in the expression")


def expression(text):
    text = text or ""
    found = re.findall(r"(?im)^[ \t>*_-]*(?:python[ \t]+)?expression[ \t*_]*[:=][ \t]*(.+)$", text)
    if not found:
        fenced = re.findall(r"```(?:python|py)?[ \t]*\n?(.*?)```", text, re.S)
        lines = [ln for ln in (fenced[-1] if fenced else "").splitlines() if ln.strip()]
        found = lines[-1:]
    if not found:
        found = re.findall(r"(?im)^[ \t>*_-]*answer[ \t*_]*[:=][ \t]*(.+)$", text)
    if not found:
        found = [ln for ln in text.splitlines() if ln.strip()][-1:]
    expr = found[-1].strip().strip("`$* ").strip() if found else ""
    m = re.match(r"^print\((.*)\)$", expr)
    expr = m.group(1) if m else expr
    m = re.match(r"^[A-Za-z_][A-Za-z0-9_]*[ \t]*=(?!=)(.+)$", expr)
    expr = m.group(1) if m else expr
    expr = expr.replace("^", "**").replace("\u00d7", "*").replace("\u00f7", "/")
    return expr.strip().rstrip(".;").strip()


def show(value):
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("the result is not a finite number")
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".10g")
    raise ValueError("the expression must give one number")


def tool(input, last):
    expr = expression(last)
    if not expr:
        return "Error: no expression found"
    if len(expr) > 500:
        return "Error: expression longer than 500 characters"
    try:
        return "Answer: " + show(ev(ast.parse(expr, mode="eval")))
    except Exception as e:
        return "Error: cannot evaluate " + repr(expr[:200]) + ": " + type(e).__name__ + ": " + str(e)[:200]
