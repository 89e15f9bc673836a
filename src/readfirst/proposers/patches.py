"""The `patches` proposer: every `*.patch` / `*.diff` file of a directory is one candidate.

Patches are offered as they are; the executor applies each against the then-current baseline
and records conflicts, so nothing is test-applied here.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from pathlib import Path

from readfirst.core.candidate import Candidate
from readfirst.core.errors import ConfigError
from readfirst.proposers.base import ProposerContext, RecordsSkips

SUFFIXES = (".patch", ".diff")
# `[PATCH]`, `[PATCH 2/5]`, `[RFC PATCH v2 1/3]`, ... (possibly several) before the subject.
_PATCH_PREFIX = re.compile(r"^(?:\s*\[[^\]]*\bPATCH\b[^\]]*\])+\s*", re.IGNORECASE)
_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:")
_DIFF_SYNTAX = ("diff ", "index ", "--- ", "+++ ", "@@", "Index: ", "====", "Binary files ")
_EXTENDED = ("new file mode", "deleted file mode", "old mode", "rename from", "copy from")


class PatchesProposer(RecordsSkips):
    """Offers patch files from `options["patches_dir"]`, sorted by file name."""

    name = "patches"

    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        self._skipped = []
        raw = ctx.options.get("patches_dir")
        if not raw:
            raise ConfigError("the patches proposer needs a patches directory (patches_dir)")
        directory = Path(raw).expanduser()
        if not directory.is_dir():
            raise ConfigError(f"patches directory {raw}: no such directory")
        files = sorted(
            (p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file()),
            key=lambda p: p.name,
        )
        if not files:  # nothing to try is a mistake, not a run that finds nothing
            raise ConfigError(f"patches directory {raw}: no {' or '.join(SUFFIXES)} files in it")
        candidates = []
        for path in files:
            cand_id = f"patch:{path.name}"
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                self._skipped.append((cand_id, path.stem, f"cannot read {path}: {e}"))
                continue
            if not text.strip():
                self._skipped.append((cand_id, path.stem, "empty patch file"))
                continue
            title, rationale = describe(text, path.stem)
            if not has_hunk(text):
                self._skipped.append((cand_id, title, "no diff hunk in the file"))
                continue
            candidates.append(
                Candidate(
                    id=cand_id,
                    title=title,
                    rationale=rationale,
                    diff=text,
                    source=self.name,
                    provenance=(str(path.absolute()),),
                )
            )
        return candidates


def has_hunk(text: str) -> bool:
    """Whether the text holds something `git apply` can apply: a hunk, a binary patch, or a
    git header that changes a mode, creates, deletes or renames a file."""
    lines = text.splitlines()
    if any(re.match(r"^@@ -\d", ln) or ln.startswith("GIT binary patch") for ln in lines):
        return True
    return any(ln.startswith("diff --git ") for ln in lines) and any(
        ln.startswith(_EXTENDED) for ln in lines
    )


def describe(text: str, fallback: str) -> tuple[str, str]:
    """(title, rationale) of a patch file: a format-patch's subject and message body, else the
    first descriptive line before the diff, else `fallback`."""
    lines = text.splitlines()
    mail = _mail_message(lines)
    if mail is not None:
        subject, body = mail
        return (subject or fallback, body)
    for ln in lines:
        if ln.startswith(("diff --git", "---")):
            break
        if ln.strip():
            return (fallback if ln.startswith(_DIFF_SYNTAX) else ln.strip(), "")
    return (fallback, "")


def _mail_message(lines: list[str]) -> tuple[str, str] | None:
    """Subject and body of a `git format-patch` (mbox) header; None when there is none."""
    if not lines or not (lines[0].startswith("From ") or _HEADER.match(lines[0])):
        return None
    subject: list[str] | None = None
    in_subject = False
    end = None
    for i, ln in enumerate(lines):
        if not ln.strip():
            end = i
            break
        if ln[:1] in (" ", "\t"):  # RFC 2822 folding: continues the previous header
            if in_subject and subject is not None:
                subject.append(ln.strip())
            continue
        if not (ln.startswith("From ") or _HEADER.match(ln)):
            return None  # not a header block
        in_subject = ln.lower().startswith("subject:")
        if in_subject:
            subject = [ln[len("subject:") :].strip()]
    if subject is None or end is None:
        return None
    body: list[str] = []
    for ln in lines[end + 1 :]:
        if ln == "---" or ln.startswith("diff --git "):
            break
        body.append(ln)
    title = _PATCH_PREFIX.sub("", _decode(" ".join(subject))).strip()
    return title, "\n".join(body).strip()


def _decode(header: str) -> str:
    """An RFC 2047 encoded header (`=?UTF-8?q?...?=`, as format-patch writes non-ASCII) as text."""
    try:
        return str(make_header(decode_header(header)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return header
