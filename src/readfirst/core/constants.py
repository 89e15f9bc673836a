"""Every threshold and default in one place (as codeflash does), so a reviewer can audit them."""

# --- [compare] defaults -------------------------------------------------------------------
DEFAULT_ROUNDS = 1  # a look every this many rounds (from FIRST_LOOK_ROUNDS on): looking after
# every round stops a clear gain where it crosses its boundary instead of at the next multiple
# of 5; the spending depends on rounds only, so the finer looks cost little (docs/measurement.md)
BENCH_ROUNDS = 5  # `readfirst bench` runs when neither --rounds nor a larger [compare] rounds
DEFAULT_MAX_ROUNDS = 40  # only candidates whose estimate stays promising get this far
DEFAULT_NOISE_THRESHOLD = 0.01  # relative change that counts as "no change"
DEFAULT_ALPHA = 0.005  # family-wise two-sided alpha over all looks of one compare; chosen so
# that the measured false improved/regressed rate stays <= 1 % (docs/measurement.md)
JUDGE_ALPHA = 0.05  # `readfirst judge`: per-row significance level (benchstat's default)
DEFAULT_WARMUP = 1  # unrecorded runs per side before the first round
DEFAULT_MODE = "interleaved"  # or "duet"
DEFAULT_SPENDING = "pocock"  # Lan-DeMets spending over the looks; or "obrien_fleming"

# --- statistics ---------------------------------------------------------------------------
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_170_422  # fixed so anyone can recompute a verdict from the raw samples
LIVE_BOOTSTRAP_RESAMPLES = 2_000  # the live (advisory) estimate while rounds run; cheap per round
LIVE_CI_LEVEL = 0.95  # ... and the level of its percentile interval
MIN_ROUNDS_FOR_TEST = 4  # no look before this many rounds
FIRST_LOOK_ROUNDS = 10  # the first look that may decide (earlier looks would waste alpha)
PROMISING_FRACTION = 0.5  # more rounds only while the estimate reaches this share of the
# smallest gain worth keeping (the noise threshold) on the better side
JUDGE_SIDE_CI_LEVEL = 0.95  # `readfirst judge`: each side's median +- CI, as benchstat
RANK_SUM_EXACT_LIMIT = 25  # exact rank-sum distribution (with ties) up to this many per side
HIGH_CV = 0.10  # warn when stddev/mean reaches this (pyperf's rule)
OUTLIER_MODIFIED_Z = 3.5  # Iglewicz & Hoaglin; modified Z = 0.6745 (x - median) / MAD
SCREEN_MODIFIED_Z = 4.0  # paired log ratios beyond this are bursts on one side, left out

# --- integrity guards ---------------------------------------------------------------------
PLAUSIBLE_RATIO = 3.0  # cand/base beyond 3x either way is "suspect", never "improved"
BASELINE_DRIFT = 0.10  # flag a baseline this far from the journal's last one (same code, host)
# Formats whose tools calibrate their own iteration counts, so the process's wall time stays
# the same whatever the speed: readfirst's wall clock cannot check their metric.
# The smallest share of a benchmark process's wall time the metric may time: a metric that
# claims a change the wall clock does not show even at this share (at the edges of both CIs)
# is `suspect`. The demo's decode loop is about half its process; a METRIC printed 2x better
# than measured leaves the wall at 1.00 and trips any share above a few percent.
WALL_MIN_TIMED_SHARE = 0.2
SELF_TIMING_FORMATS = ("google-benchmark-json", "pytest-benchmark-json")
CRASH_TAIL_LINES = 50  # lines of output kept in a crash verdict
ERROR_TAIL_LINES = 8  # lines of a failing step's output shown in an error message

# --- workers (the loop) ------------------------------------------------------------------
MAX_WORKER_CV = 0.05  # a worker whose baseline CV exceeds this is quarantined (A-vs-A check)
NOISE_EVERY_WAVES = 5  # re-check every worker's noise this often (and before the first wave)
# A thinking proposer is asked on the new baseline once a winner has landed; while one is on
# its way, it is asked anyway when at least this share of the workers (and two) would idle:
# with a few workers the wait is short, with many the idle fleet costs more than the answers
# lose by not knowing whether the winner lands (they still see it in the history).
PROPOSE_WHILE_LANDING_IDLE_SHARE = 0.1

# --- live views ---------------------------------------------------------------------------
DASHBOARD_PORT = 8765  # `readfirst dashboard` default (127.0.0.1 only unless --host)
DASHBOARD_TICK = 2.0  # seconds between pushes while a run goes on (elapsed times move)

# --- timeouts (seconds) -------------------------------------------------------------------
DEFAULT_BUILD_TIMEOUT = 600
DEFAULT_BENCH_TIMEOUT = 300
DEFAULT_CHECKS_TIMEOUT = 300
KILL_GRACE_SECONDS = 2.0  # SIGTERM, then SIGKILL after this
SANDBOX_PROBE_TIMEOUT = 20.0  # one `bwrap ... true` to learn whether namespaces work here
OUTPUT_DRAIN_SECONDS = 1.0  # after a step exits, read what its pipes still hold this long

# --- sandbox, environment and output (untrusted candidates) --------------------------------
# Proposers whose candidates a person wrote or chose (forks, patch files; "readfirst": its own
# A-vs-A noise checks): the only ones that may run unsandboxed when a worker cannot sandbox.
# Code from any other proposer (llm, agent, plugins) is refused there unless --no-sandbox.
HUMAN_SOURCES = ("forks", "patches", "readfirst")
OUTPUT_CAP_BYTES = 16 * 1024 * 1024  # per stream of a step: the log keeps head + tail within it
OUTPUT_TAIL_BYTES = 1024 * 1024  # of which the last this many bytes are always kept
MAX_STREAMED_METRICS = 10_000  # METRIC lines remembered per step while streaming
MIN_SECRET_LENGTH = 8  # shorter environment values are not scrubbed (ordinary words)

# --- exit codes ---------------------------------------------------------------------------
EXIT_OK = 0  # a verdict was reached (any verdict)
EXIT_USAGE = 2  # usage or configuration error
EXIT_BASE_FAILED = 3  # the base revision cannot be built or benchmarked
EXIT_INTERRUPTED = 130  # Ctrl-C

# --- layout -------------------------------------------------------------------------------
STATE_DIR = ".readfirst"
JOURNAL_FILE = "journal.db"
# Files only readfirst itself reads: the judge's config. It always comes from the user's tree,
# so a WORKTREE snapshot keeps HEAD's version of these (a fresh `readfirst init` is not a change).
CONFIG_FILES = ("readfirst.toml", ".auto/config.json", "autoresearch.config.json")
# Files a candidate may never change, whatever the config says: the judge's own inputs.
ALWAYS_PROTECTED = (
    "readfirst.toml",
    ".auto/**",
    "autoresearch.sh",
    "autoresearch.checks.sh",
    "autoresearch.config.json",
)

# --- forks proposer: triage and ranking ---------------------------------------------------
# Applied after triage and ranking, so it only ever cuts the least promising in-scope commits
# (a fork 3 000 commits ahead with 2 % in scope has about 60).
DEFAULT_MAX_FORK_COMMITS = 200
# What a port may leave out of a commit that also changes scope: docs, CI, tests.
FORK_NON_CODE = (
    "**/*.md", "**/*.rst", "**/*.adoc", "docs/**", "doc/**", "**/docs/**", "media/**",
    ".github/**", ".gitlab/**", ".gitlab-ci.yml", ".circleci/**", "ci/**", ".devops/**",
    ".travis.yml", "appveyor.yml", "tests/**", "test/**", "**/tests/**", "**/test/**",
    "LICENSE*", "AUTHORS", "CODEOWNERS", "CHANGELOG*", ".editorconfig", ".gitignore",
    ".clang-format", ".clang-tidy", ".flake8", ".pre-commit-config.yaml",
)
FORK_HOT_FUNCTIONS = 10  # the profile's hottest functions a commit is matched against
FORK_SITE_WINDOW = 30  # lines: a hunk this close to a hypothesis' site touches it
FORK_STACK_DEPTH = 4  # earlier commits tried under one that does not apply alone
FORK_BUILD_PROBE_TIMEOUT = 30  # seconds for `make -n` / `cc -dM -E` when reading the build

# --- timed runs on one machine ------------------------------------------------------------
# Every timed benchmark run on this machine holds this lock (outside any worktree, in the
# user's home, hidden from the sandbox), so the runs of different workers never overlap.
# READFIRST_TIMED_LOCK overrides the path.
TIMED_LOCK_FILE = ".cache/readfirst/locks/timed-runs.lock"  # under the home directory
TIMED_LOCK_MAX_WAIT = 3600  # seconds; past this something holds the lock for good
TIMED_LOCK_LOG_AFTER = 5.0  # seconds of waiting before the holder is named in the log
TIMED_LOCK_SLACK = 30.0  # seconds beyond the step timeouts before a holder counts as stuck
# [executor] quiet_timed_runs: how often a paused build or checks step looks at the lock
YIELD_POLL_SECONDS = 0.02
# speculative confirmations (loop/speculation.py): alternatives per stacked winner, made of
# subsets of the first few winners ahead not back yet; only the winners this near the head of
# the landing queue get more than one
SPECULATIONS_PER_WINNER = 4
SPECULATION_UNKNOWN_AHEAD = 3
SPECULATION_DEPTH = 8

# --- research ranking ---------------------------------------------------------------------
PROFILE_WEIGHT = 1.0  # score += this x the inclusive share (0..1) of a hypothesis's functions
HOT_BOOST = 0.1  # without an inclusive profile: a site in one of the five hottest functions
MEMORY_LEVER_BOOST = 0.1  # memory levers when the diagnosis says memory-bound
CORROBORATION_BOOST = 0.05  # per extra source finding the same hypothesis
# score kept by a hypothesis whose experiment ended with this verdict (the rest: 0.5)
DEMOTION_BY_VERDICT = {"inconclusive": 0.9, "no_change": 0.7, "suspect": 0.8}
DEMOTION = 0.5
