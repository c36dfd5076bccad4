"""imgdiff: what changed between two system images, and what that means for running code.

One namespace for everything a caller needs, as psutil and attrs have:

- images: `open_image`, `Manifest`, `Limits`, `diff` (a `Delta` of `Change` records),
  `package_diff` (with the `PackageDelta`);
- the live host: `Snapshot`, `stale` (a `StaleReport`);
- the verdict: `plan_update` (a `Plan` holding the `Verdict`, the `Impact` and the
  `Delta`), `Policy`, `decide`, `verify` (a `Verification`), `verify_restarted`;
- delta archives: `pack`, `apply`, `rollback`;
- errors: every exception derives from `ImgdiffError` (and from the matching builtin:
  `BadInput` is a `ValueError`, `NoSuchProcess` a `ProcessLookupError`, `AccessDenied` a
  `PermissionError`).

Names load on first use, so `import imgdiff` stays cheap for a command that needs one
stage. Every record is a frozen attrs class (`Manifest` aside: the reader of one image,
holding it open until `close()`).
"""

from __future__ import annotations

from imgdiff._lazy import install
from imgdiff.errors import (
    AccessDenied,
    BadInput,
    ImgdiffError,
    LimitExceeded,
    NoSuchProcess,
    Unsupported,
)

# typing is not imported for its TYPE_CHECKING: every command pays for `import imgdiff`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from imgdiff.archive.apply import apply, rollback
    from imgdiff.archive.pack import pack
    from imgdiff.delta import compare
    from imgdiff.elf import ElfParseError
    from imgdiff.image import Limits, open_image
    from imgdiff.manifest import ImageInfo, Manifest
    from imgdiff.model import Aspect, Change, Entry, EntryType, ImageWarning, Kind, Status, Via
    from imgdiff.pipeline import diff, package_diff, plan_update
    from imgdiff.plan import Policy, decide
    from imgdiff.results import (
        ApplyResult,
        CheckResult,
        Delta,
        DeltaStats,
        Drift,
        Evidence,
        EvidenceStatus,
        Impact,
        PackageChange,
        PackageChangeKind,
        PackageDelta,
        PackResult,
        Plan,
        ProcessImpact,
        Reason,
        ReasonCode,
        StaleReport,
        Step,
        StepAction,
        Verdict,
        VerdictKind,
        Verification,
    )
    from imgdiff.runtime.snapshot import Snapshot
    from imgdiff.runtime.stale import stale
    from imgdiff.verify import verify, verify_restarted

__version__ = "0.1.0"

_LAZY = {
    "apply": "imgdiff.archive.apply",
    "rollback": "imgdiff.archive.apply",
    "pack": "imgdiff.archive.pack",
    "compare": "imgdiff.delta",
    "ElfParseError": "imgdiff.elf",
    "Limits": "imgdiff.image",
    "open_image": "imgdiff.image",
    "ImageInfo": "imgdiff.manifest",
    "Manifest": "imgdiff.manifest",
    **dict.fromkeys(
        ("Aspect", "Change", "Entry", "EntryType", "ImageWarning", "Kind", "Status", "Via"),
        "imgdiff.model",
    ),
    **dict.fromkeys(("diff", "package_diff", "plan_update"), "imgdiff.pipeline"),
    **dict.fromkeys(("Policy", "decide"), "imgdiff.plan"),
    **dict.fromkeys(
        (
            "ApplyResult",
            "CheckResult",
            "EvidenceStatus",
            "PackageChangeKind",
            "Reason",
            "ReasonCode",
            "StepAction",
            "VerdictKind",
            "Delta",
            "DeltaStats",
            "Drift",
            "Evidence",
            "Impact",
            "PackageChange",
            "PackageDelta",
            "PackResult",
            "Plan",
            "ProcessImpact",
            "StaleReport",
            "Step",
            "Verdict",
            "Verification",
        ),
        "imgdiff.results",
    ),
    "Snapshot": "imgdiff.runtime.snapshot",
    "stale": "imgdiff.runtime.stale",
    **dict.fromkeys(("verify", "verify_restarted"), "imgdiff.verify"),
}


__getattr__ = install(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AccessDenied",
    "ApplyResult",
    "Aspect",
    "BadInput",
    "Change",
    "CheckResult",
    "Delta",
    "DeltaStats",
    "Drift",
    "ElfParseError",
    "Entry",
    "EntryType",
    "Evidence",
    "EvidenceStatus",
    "ImageInfo",
    "ImageWarning",
    "ImgdiffError",
    "Impact",
    "Kind",
    "LimitExceeded",
    "Limits",
    "Manifest",
    "NoSuchProcess",
    "PackResult",
    "PackageChange",
    "PackageChangeKind",
    "PackageDelta",
    "Plan",
    "Policy",
    "ProcessImpact",
    "Reason",
    "ReasonCode",
    "Snapshot",
    "StaleReport",
    "Status",
    "Step",
    "StepAction",
    "Unsupported",
    "Verdict",
    "VerdictKind",
    "Verification",
    "Via",
    "__version__",
    "apply",
    "compare",
    "decide",
    "diff",
    "open_image",
    "pack",
    "package_diff",
    "plan_update",
    "rollback",
    "stale",
    "verify",
    "verify_restarted",
]
