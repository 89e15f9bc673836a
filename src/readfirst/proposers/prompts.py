"""What the llm proposer asks a model, and the shapes of the answers it accepts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SYSTEM = ("You are a senior performance engineer improving someone else's code. You propose "
          "small, safe, measurable speed-ups and implement them exactly. The benchmark and the "
          "correctness checks are fixed; the program's behaviour must stay the same.")
EDIT_FORMAT = """Reply with SEARCH/REPLACE blocks, one per change, the file's path on the line
before each block (paths relative to the target's directory):

src/example.c
<<<<<<< SEARCH
exact lines copied from the file
=======
the new lines
>>>>>>> REPLACE

An empty SEARCH creates a new file. A unified diff (```diff, --- a/path +++ b/path) is also
accepted. Give a short explanation first if you like, but no other code."""


class HypothesisOut(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str = Field(min_length=1)
    rationale: str
    files: list[str]
    expected_effect: str
    based_on: int | None = None  # the number of the research hypothesis it develops


class HypothesesOut(BaseModel):
    hypotheses: list[HypothesisOut]


class ReviewOut(BaseModel):
    approve: bool
    reason: str


BRIEF_CHARS = 8_000


def _rules(scope: list[str], protected: list[str]) -> list[str]:
    return [f"- Only change files matching: {', '.join(scope) or 'any file'}.",
            f"- Never change: {', '.join(protected)}.",
            "- Keep the program's output and behaviour identical; the checks must pass."]


def hypotheses_prompt(n: int, scope: list[str], protected: list[str], brief: str,
                      diag: dict[str, Any], research: list[dict[str, Any]], code: str,
                      history: list[dict[str, Any]]) -> str:
    """Ask for up to n hypotheses as JSON, from the research and the code around its sites."""
    out = ["# Task", "", f"Propose up to {n} distinct, concrete performance hypotheses for this "
           "code, best first, each a small source change.", "", *_rules(scope, protected), ""]
    if brief:
        cut = "\n... (truncated)" if len(brief) > BRIEF_CHARS else ""
        out += ["## Research brief", "", brief[:BRIEF_CHARS] + cut, ""]
    if diag:
        top = ", ".join(f"{t['function']} {t['share']:.1f} %"
                        for t in (diag.get("top_functions") or [])[:8])
        out += ["## Diagnosis", "", f"conclusion: {diag.get('conclusion', 'none')}"
                + (f"; hottest: {top}" if top else ""), ""]
    if research:
        out += ["## Open research hypotheses", ""]
        for i, h in enumerate(research, 1):
            sites = ", ".join(f"{s['path']}:{s['line']}" for s in h.get("sites", [])[:4])
            out.append(f"{i}. {h['title']} ({h['kind']}, score {h['score']:.2f}): "
                       f"{h['rationale'][:400].rstrip('.')}." + (f" Sites: {sites}." if sites
                                                                 else "")
                       + (f" Expected: {h['expected_effect']}" if h.get("expected_effect")
                          else ""))
        out.append("")
    if code:
        out += [code, ""]
    if history:
        out += ["## Already tried (do not propose these again)", ""]
        out += [f"- tried: {h.get('title', '?')} -> {h.get('verdict') or h.get('outcome')}"
                + (f" ({str(h['reason'])[:160]})" if h.get("reason") else "") for h in history]
        out.append("")
    out += ["# Answer", "", "Only a JSON object, in a ```json fence:", "",
            '{"hypotheses": [{"title": str, "rationale": str, "files": [str], '
            '"expected_effect": str, "based_on": int or null}]}', "",
            "files: the paths (relative to the target's directory) the change edits; "
            "based_on: the number of the research hypothesis it develops, if any."]
    return "\n".join(out)


def implement_prompt(h: HypothesisOut, scope: list[str], protected: list[str],
                     files: str) -> str:
    return "\n".join([
        "# Implement this performance hypothesis", "", f"Title: {h.title}",
        f"Rationale: {h.rationale}", f"Expected effect: {h.expected_effect}", "", "# Rules", "",
        *_rules(scope, protected), "- SEARCH text must be copied exactly from the files below.",
        "", "# Files (at the baseline)", "", files, "", "# Answer format", "", EDIT_FORMAT])


def repair_prompt(cand: Any, verdict: str, tail: str, files: str) -> str:
    return "\n".join([
        "# Repair a failed performance change", "", f"Title: {cand.title}",
        f"Rationale: {cand.rationale}", "", f"It was applied to the baseline and ended with "
        f"verdict {verdict!r}. Its diff:", "", "```diff", cand.diff.rstrip(), "```", "",
        "The last lines of the failing step:", "", "```", tail, "```", "",
        "Write the corrected change as a complete edit against the baseline files below (not "
        "on top of the failed diff). Keep the optimisation; fix the failure. Only change files "
        "in scope; never change the benchmark, checks or tests.", "",
        "# Files (at the baseline)", "", files, "", "# Answer format", "", EDIT_FORMAT])


def review_prompt(cand: Any, rules: str, code: str) -> str:
    return "\n".join([
        "# Review a change before it is merged", "",
        "It made the benchmark faster and passed the checks. Judge only whether the project's "
        "maintainers would accept it: style, conventions, readability, portability, hidden "
        "behaviour changes.", "", f"Title: {cand.title}", "", "```diff", cand.diff.rstrip(),
        "```", "", f"## CONTRIBUTING\n\n{rules[:6000]}\n" if rules else "", code, "",
        'Answer only a JSON object: {"approve": true or false, "reason": "one sentence"}'])


