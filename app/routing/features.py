"""The request as the router sees it: cheap, deterministic features."""

from __future__ import annotations

from dataclasses import dataclass

from app.protocol.internal import RouteRequest

_CODE_STARTS = ("def ", "class ", "function ", "public ", "#include", "import ", "fn ", "func ")
_CODE_ENDS = ("{", "}", ";")


def looks_like_code(text: str) -> bool:
    """A code fence, or a line that starts or ends like code. Plain loops beat a regex here."""
    if "```" in text:
        return True
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.endswith(_CODE_ENDS) or stripped.startswith(_CODE_STARTS):
            return True
    return False


def estimate_tokens(text: str) -> int:
    """About 4 bytes per token for BPE tokenizers on English; exact counts come from vLLM."""
    return (len(text.encode("utf-8")) + 3) // 4


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    text: str
    lower: str
    prompt_tokens: int
    turns: int
    has_code: bool
    reasoning_effort: str | None
    max_tokens: int | None

    @classmethod
    def of(cls, req: RouteRequest) -> RequestFeatures:
        return cls(
            text=req.prompt_text,
            lower=req.prompt_text.lower(),
            prompt_tokens=estimate_tokens(req.prompt_text),
            turns=req.turns,
            has_code=looks_like_code(req.prompt_text),
            reasoning_effort=req.reasoning_effort,
            max_tokens=req.max_tokens,
        )

    def summary(self) -> dict[str, float]:
        """The main features, for logs and explanations."""
        return {"prompt_tokens": float(self.prompt_tokens), "turns": float(self.turns),
                "has_code": float(self.has_code)}
