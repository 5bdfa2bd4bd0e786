"""The one positions model: which tokens of each prompt an operation reads or edits.

A position spec is one of

- ``"last"``: the last token of each prompt;
- ``"all"``: every token of each prompt;
- an ``int`` or a list of ints: token indices *in each prompt's own tokens* (0 is the
  prompt's first token, BOS included; negative indices count from the prompt's end);
- a tag name of a :class:`~interp.prompts.PromptSet`, or a :class:`Span` (the first, last
  or every token of a tagged piece of text).

:func:`resolve` turns a spec into per-prompt token indices; padding never shows: the
execution layer maps these indices to padded columns internally. A position that does not
exist in a prompt is an :class:`~interp.errors.PositionError` naming the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union

from interp.errors import PositionError

__all__ = ["Span", "Positions", "normalize", "resolve", "span_tokens", "describe"]

_WHICH = ("last", "first", "all")


@dataclass(frozen=True)
class Span:
    """The tokens of tag ``tag``: its ``"last"`` token, its ``"first"`` or ``"all"`` of them."""

    tag: str
    which: Literal["last", "first", "all"] = "last"

    def __post_init__(self) -> None:
        if not isinstance(self.tag, str) or not self.tag:
            raise PositionError(f"Span needs a tag name, got {self.tag!r}")
        if self.which not in _WHICH:
            raise PositionError(
                f"Span({self.tag!r}, {self.which!r}): which must be one of {', '.join(_WHICH)}"
            )


Positions = Union[Literal["last", "all"], int, Sequence[int], str, Span]  # noqa: UP007
Normalized = Union[Literal["last", "all"], tuple[int, ...], Span]  # noqa: UP007


def normalize(positions: Positions) -> Normalized:
    """Check a spec and bring it to one of ``"last"``, ``"all"``, a tuple of ints, a Span."""
    if isinstance(positions, Span):
        return positions
    if isinstance(positions, str):
        if positions in ("last", "all"):
            return positions  # type: ignore[return-value]
        if not positions:
            raise PositionError("positions: an empty string is not a tag name")
        return Span(positions)
    if isinstance(positions, bool):
        raise PositionError(f"positions must be 'last', 'all', ints or a tag, got {positions!r}")
    if isinstance(positions, int):
        return (int(positions),)
    try:
        items = list(positions)
    except TypeError:
        raise PositionError(
            f"positions must be 'last', 'all', ints or a tag, got {type(positions).__name__}"
        ) from None
    if not items:
        raise PositionError("positions: the list of token indices is empty")
    for p in items:
        if isinstance(p, bool) or not isinstance(p, int) and not hasattr(p, "__index__"):
            raise PositionError(f"positions: token indices must be ints, got {p!r}")
    return tuple(int(p) for p in items)


def span_tokens(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of the tokens (``offsets``: one ``(start, end)`` character pair per token of an
    unpadded prompt) that overlap the character ``span``."""
    lo, hi = span
    return [j for j, (s, e) in enumerate(offsets) if e > s and s < hi and e > lo]


def resolve(
    positions: Positions,
    lengths: Sequence[int],
    *,
    spans: Sequence[Sequence[int]] | None = None,
    first: int = 0,
) -> list[list[int]]:
    """Per prompt, the sorted unpadded token indices that ``positions`` names.

    ``lengths``: each prompt's token count. ``spans``: for a tag or :class:`Span` spec, each
    prompt's tag tokens (from :func:`span_tokens`). ``first``: index of the first prompt in
    the caller's numbering, for error messages.
    """
    spec = normalize(positions)
    out: list[list[int]] = []
    for i, n in enumerate(lengths):
        if n < 1:
            raise PositionError(f"prompt {first + i} has no tokens")
        if spec == "last":
            out.append([n - 1])
        elif spec == "all":
            out.append(list(range(n)))
        elif isinstance(spec, Span):
            if spans is None:
                raise PositionError(f"positions {spec!r} name a tag: give prompts with tags")
            toks = list(spans[i])
            if not toks:
                raise PositionError(f"tag {spec.tag!r} covers no token in prompt {first + i}")
            out.append(toks if spec.which == "all" else [toks[-1 if spec.which == "last" else 0]])
        else:
            for p in spec:
                if not -n <= p < n:
                    raise PositionError(
                        f"position {p} does not exist in prompt {first + i} ({n} tokens: "
                        f"valid {-n}..{n - 1})"
                    )
            out.append(sorted({p % n for p in spec}))
    return out


def describe(positions: Positions) -> str:
    """A stable text form of a spec, for configs and store keys."""
    spec = normalize(positions)
    if isinstance(spec, Span):
        return f"Span({spec.tag!r}, {spec.which!r})"
    return spec if isinstance(spec, str) else repr(list(spec))
