"""Time-limited math answer equivalence through ``math-verify``, without signals or threads.

``math-verify`` (a maintained library) parses LaTeX answers into ``sympy`` and compares them
(fractions, intervals, sets, units, ``\\text{}``...). Its own time limit uses
``signal.alarm``: it only works in the main thread, and it cannot interrupt a long C-level
computation such as ``9^{9^{9^{9}}}`` evaluated as an exact integer. Rewards may run in
worker threads, and a model being trained will eventually emit such an answer.

What this module chose:

1. A cheap pre-screen in the caller rejects, in microseconds, answers that cannot be a
   MATH answer but can explode in ``sympy``: longer than ``max_chars``, nested deeper than
   :data:`MAX_NESTING`, exponent towers, exponents of 6+ digits (``x^{100000}``) and
   factorials of 5+ digit numbers (``2^{2005}`` or ``100!`` still go through).
2. Everything else is compared in ONE long-lived helper process
   (``python -m dmpo.tasks.mathverify``, plain ``subprocess`` pipes with JSON lines), with
   math-verify's own alarms switched off. The caller waits at most ``timeout_s`` for the
   answer; past it the helper is killed (SIGKILL) and a fresh one starts in the background,
   and the comparison counts as "not equivalent". This bounds every call, in any thread,
   whatever the input. Calls from several threads are serialised by a lock; a forked child
   starts its own helper.
3. Results are cached (LRU) per (gold, prediction): a group of G completions often repeats
   an answer.

The price is one process (~0.6 s to start, ~100 MB) and a pipe round trip (~0.1 ms) per
uncached comparison.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

MAX_NESTING = 24
"""Deepest brace/parenthesis/bracket nesting the pre-screen lets through."""
DEFAULT_TIMEOUT_S = 3.0
"""Default time limit of one comparison (legitimate ones take under 0.6 s, the first of a kind the longest)."""
STARTUP_TIMEOUT_S = 60.0
"""How long the helper may take to import ``math_verify`` and report ready."""
_CACHE_SIZE = 8192


def prescreen(answer: str, *, max_chars: int = 256) -> bool:
    """True when ``answer`` may be handed to ``sympy``; False for inputs that can only be wrong
    and might be very slow (too long, too deep, exponent towers, huge exponents/factorials).

    One left-to-right scan, linear in ``len(answer)`` (but stops at ``max_chars``).
    """
    if len(answer) > max_chars:
        return False
    depth = 0
    exp_groups: list[int] = []  # depths at which an exponent group was opened
    i, n = 0, len(answer)
    while i < n:
        ch = answer[i]
        if ch in "{([":
            depth += 1
            if depth > MAX_NESTING:
                return False
        elif ch in "})]":
            if exp_groups and exp_groups[-1] == depth:
                exp_groups.pop()
            depth = max(0, depth - 1)
        elif ch == "^" or (ch == "*" and i + 1 < n and answer[i + 1] == "*"):
            if exp_groups:
                return False  # a power inside an exponent: a tower
            j = i + (2 if ch == "*" else 1)
            while j < n and answer[j] == " ":
                j += 1
            if j < n and answer[j] in "{(":
                exp_groups.append(depth + 1)
            k = j + 1 if j < n and answer[j] in "{(" else j
            digits = 0
            while k < n and (answer[k].isdigit() or answer[k] in ",. "):
                digits += answer[k].isdigit()
                k += 1
            if digits >= 6:
                return False
            if not (j < n and answer[j] in "{("):  # bare exponent: is it followed by another power?
                while k < n and (answer[k].isalnum() or answer[k] == " "):
                    k += 1
                if k < n and (answer[k] == "^" or answer.startswith("**", k)):
                    return False
            i = max(i + 1, j)
            continue
        elif ch == "!" and i >= 5 and answer[i - 5 : i].isdigit():
            return False
        i += 1
    return True


class _Helper:
    """The helper process and the thread that reads its replies."""

    def __init__(self) -> None:
        self.pid_owner = os.getpid()
        self.replies: queue.Queue[Any] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.ready = False
        reader = threading.Thread(target=self._read, name="dmpo-mathverify-reader", daemon=True)
        reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                try:
                    self.replies.put(json.loads(line))
                except ValueError:
                    continue
        except (OSError, ValueError):
            pass
        self.replies.put(None)  # end of stream: the helper died

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a SIGKILLed process always exits
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask the helper to exit (stdin closed), kill it if it does not within a second."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=1)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        self.kill()


class MathVerifier:
    """Compares answers with math-verify in a helper process, each call bounded in time.

    A process-wide instance is returned by :func:`shared_verifier`; tests may build their own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._helper: _Helper | None = None
        self._next_id = 0
        self.timeouts = 0
        """Comparisons that ran past their time limit (the helper was restarted each time)."""
        self.restarts = 0
        """Helpers started after the first one."""

    def start(self) -> None:
        """Start the helper now (it imports math-verify in the background) if none runs."""
        with self._lock:
            self._ensure_helper()

    def _ensure_helper(self) -> _Helper:
        h = self._helper
        if h is not None and h.pid_owner == os.getpid() and h.proc.poll() is None:
            return h
        if h is not None and h.pid_owner == os.getpid():
            h.kill()
            self.restarts += 1
        # a helper inherited through fork belongs to the parent: leave it alone
        self._helper = _Helper()
        return self._helper

    def _request(self, message: dict[str, Any], timeout_s: float) -> Any:
        """Send ``message``, return the helper's reply or None (timed out / helper died)."""
        with self._lock:
            helper = self._ensure_helper()
            self._next_id += 1
            message = {**message, "id": self._next_id}
            if not helper.ready and not self._wait_ready(helper):  # its first reply is "ready"
                return None
            try:
                assert helper.proc.stdin is not None
                helper.proc.stdin.write(json.dumps(message) + "\n")
                helper.proc.stdin.flush()
            except (OSError, ValueError):
                self._restart(helper)
                return None
            deadline = time.monotonic() + timeout_s
            while True:
                left = deadline - time.monotonic()
                try:
                    reply = helper.replies.get(timeout=max(left, 0.0)) if left > 0 else helper.replies.get_nowait()
                except queue.Empty:
                    self.timeouts += 1
                    self._restart(helper)
                    return None
                if reply is None:  # the helper died (out of memory, crash)
                    self._restart(helper)
                    return None
                if reply.get("id") == message["id"]:
                    return reply

    def _wait_ready(self, helper: _Helper) -> bool:
        try:
            reply = helper.replies.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            reply = None
        if not reply or not reply.get("ready"):
            self._restart(helper)
            return False
        helper.ready = True
        return True

    def _restart(self, helper: _Helper) -> None:
        helper.kill()
        self.restarts += 1
        self._helper = _Helper()  # starts importing now, ready by the next call

    def equivalent(self, gold: str, prediction: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """True when math-verify finds ``prediction`` equivalent to ``gold`` within ``timeout_s``.

        Both are answer bodies (the content of ``\\boxed{}``), not whole solutions. Never
        raises: a timeout, a parse failure or a dead helper all count as not equivalent.
        """
        reply = self._request({"gold": gold, "pred": prediction}, timeout_s)
        return bool(reply and reply.get("ok"))

    def _sleep(self, seconds: float, *, timeout_s: float) -> bool:
        """Make the helper busy for ``seconds`` (tests use it to simulate a hung comparison)."""
        reply = self._request({"sleep": seconds}, timeout_s)
        return reply is not None

    def close(self) -> None:
        """Stop the helper process."""
        with self._lock:
            if self._helper is not None and self._helper.pid_owner == os.getpid():
                self._helper.close()
            self._helper = None


_SHARED: MathVerifier | None = None
_SHARED_LOCK = threading.Lock()


def shared_verifier() -> MathVerifier:
    """The process-wide :class:`MathVerifier` (its helper stops when the interpreter exits)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = MathVerifier()
            atexit.register(_SHARED.close)
        return _SHARED


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_equivalent(gold: str, prediction: str, timeout_s: float) -> bool:
    return shared_verifier().equivalent(gold, prediction, timeout_s=timeout_s)


def _squash(text: str) -> str:
    return "".join(text.split())


def answers_equivalent(
    gold: str, prediction: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_chars: int = 256,
    screen: bool = True,
) -> bool:
    """True when ``prediction`` is a mathematically equivalent answer to ``gold``.

    Identical answers (ignoring whitespace) match at once; answers failing :func:`prescreen`
    (when ``screen``) are wrong at once; the rest go to math-verify through the shared helper
    process, bounded by ``timeout_s`` and cached. Never raises.
    """
    if prediction is None or not isinstance(prediction, str) or not isinstance(gold, str):
        return False
    if _squash(prediction) == _squash(gold) and prediction.strip():
        return True
    if screen and not prescreen(prediction, max_chars=max_chars):
        return False
    if not screen and len(prediction) > 100 * max_chars:
        return False  # even unscreened, never ship megabytes through the pipe
    return _cached_equivalent(gold, prediction, float(timeout_s))


# ---------------------------------------------------------------------------------------
# The helper process.


def _worker() -> None:  # pragma: no cover - runs in the helper process
    import logging

    logging.disable(logging.WARNING)  # math-verify warns that its alarms are off: on purpose
    try:
        import resource

        limit = 4 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # a runaway sympy gets MemoryError
    except (ImportError, ValueError, OSError):
        pass
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    def wrap(body: str) -> str:
        return "\\boxed{" + body + "}"

    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "sleep" in msg:
            time.sleep(float(msg["sleep"]))
            ok = True
        else:
            try:
                gold = parse(wrap(str(msg["gold"])), extraction_config=configs, parsing_timeout=None)
                pred = parse(wrap(str(msg["pred"])), extraction_config=configs, parsing_timeout=None)
                ok = bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
            except BaseException:  # noqa: BLE001 - MemoryError, RecursionError ...: not equivalent
                ok = False
        out.write(json.dumps({"id": msg.get("id"), "ok": ok}) + "\n")
        out.flush()


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:  # pragma: no cover
    _worker()
