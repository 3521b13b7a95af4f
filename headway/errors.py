"""User-facing errors: each names the problem and the fix."""


class HeadwayError(Exception):
    """An error caused by the user's input; the CLI prints it without a traceback."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> HeadwayError:
    """Error for a name that is not registered, listing the valid choices."""
    return HeadwayError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")
