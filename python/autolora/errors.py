"""InputError: bad input (a flag, a file, a row of a file), found before any training starts.

Imports nothing, so config, data and models can all raise it. The CLI prints it as one line and exits
with status 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input, named: `arg: path, line 3: what is wrong`.

    arg: the argument at fault as the config spells it ("data.train_file", "model", "data.task").
    path: the file, where there is one. at: where in it ("line 3"; "item 4" of a JSON array; "row 7"
    of a Hub split). A ValueError, so callers that catch ValueError catch it too.
    """

    def __init__(self, arg: str, message: str, *, path: str | None = None, at: str | None = None) -> None:
        self.arg, self.path, self.at, self.detail = arg, path, at, message
        where = ", ".join(str(p) for p in (path, at) if p is not None)
        super().__init__(f"{arg}: {where}: {message}" if where else f"{arg}: {message}")
