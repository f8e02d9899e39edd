"""Checks of user-given values that every backend shares.

Names, Kubernetes resource quantities and environment variables are checked here,
before anything is submitted, so the local and the Kubernetes backend accept exactly
the same options.
"""

from __future__ import annotations

import re

from .errors import InvalidOptionError

# A DNS-1123 label: lower-case alphanumerics and '-', starting and ending with an
# alphanumeric, at most 63 characters (Kubernetes object names, TrainJob names).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# A Kubernetes resource quantity as users write them: a decimal number with an optional
# binary (Ki, Mi, …) or decimal (k, M, …, m for milli) suffix, or an exponent
# (``500m``, ``2``, ``1Gi``, ``1e3``).
QUANTITY = re.compile(
    r"""^
    [+]?(\d+(\.\d*)?|\.\d+)          # the number
    (
      (Ki|Mi|Gi|Ti|Pi|Ei)            # binary suffix
      |(m|k|M|G|T|P|E)               # decimal suffix (m = milli)
      |([eE][+-]?\d+)                # or an exponent
    )?$""",
    re.VERBOSE,
)

# POSIX-ish environment variable names as Kubernetes accepts them.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

#: Variables the launcher sets itself. The ``PET_*`` ones are reserved by Kubeflow
#: Trainer's torch runtime (a TrainJob may not set them); the others are the
#: ``torch.distributed`` rendezvous variables that both backends own.
RESERVED_ENV = frozenset(
    {
        "PET_NNODES",
        "PET_NPROC_PER_NODE",
        "PET_NODE_RANK",
        "PET_MASTER_ADDR",
        "PET_MASTER_PORT",
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    }
)


def check_dns1123_label(value: str, what: str = "name", max_length: int = 63) -> str:
    """Return ``value`` if it is a DNS-1123 label of at most ``max_length`` characters."""
    if not isinstance(value, str) or not value:
        raise InvalidOptionError(f"invalid {what} {value!r}: it must be a non-empty string")
    if len(value) > max_length:
        raise InvalidOptionError(
            f"invalid {what} {value!r}: at most {max_length} characters allowed, got {len(value)}"
        )
    if not _DNS1123_LABEL.match(value):
        raise InvalidOptionError(
            f"invalid {what} {value!r}: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (a DNS-1123 label)"
        )
    return value


_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_dns1123_subdomain(value: str, what: str = "name", max_length: int = 253) -> str:
    """Return ``value`` if it is a DNS-1123 subdomain (a Secret's or a ConfigMap's name):
    DNS-1123 labels joined by '.', at most ``max_length`` characters."""
    if not isinstance(value, str) or not value or len(value) > max_length or not _DNS1123_SUBDOMAIN.match(value):
        raise InvalidOptionError(
            f"invalid {what} {value!r}: use lower-case letters, digits, '-' and '.', starting and ending with a "
            f"letter or digit, at most {max_length} characters (a DNS-1123 subdomain)"
        )
    return value


def check_quantity(value: str | int | float, what: str) -> str:
    """Return ``value`` as a Kubernetes quantity string, or raise naming the option."""
    text = str(value).strip()
    if not QUANTITY.match(text) or float(re.sub(r"[A-Za-z]+.*$", "", text) or 0) <= 0:
        raise InvalidOptionError(
            f"invalid {what} {value!r}: expected a positive Kubernetes quantity such as "
            + ("'2', '500m'" if what == "cpu" else "'512Mi', '4Gi'")
        )
    return text


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Return a copy of ``env`` if every name is valid and none is reserved."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InvalidOptionError(f"invalid environment variable name {key!r}")
        if key in RESERVED_ENV:
            raise InvalidOptionError(
                f"environment variable {key} is reserved: the distributed launcher sets it"
            )
        out[key] = str(value)
    return out


def parse_env_pairs(pairs: list[str] | None) -> dict[str, str]:
    """Turn ``["K=V", …]`` (as given on a magic's command line) into a dict."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidOptionError(f"invalid --env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return check_env(env)


def check_job_name(name: str, what: str, max_length: int) -> str:
    """A DNS-1123 label that starts with a letter (Kubeflow's CEL rule for job names)."""
    check_dns1123_label(name, what, max_length)
    if not name[0].isalpha():
        raise InvalidOptionError(f"invalid {what} {name!r}: it must start with a letter")
    return name


def check_placement(spec) -> None:
    """Check and normalise the placement fields every job spec shares, in place.

    ``spec`` is a frozen dataclass with ``gpus``, ``cpu``, ``memory``, ``namespace``,
    ``image`` and ``env``; quantities and the environment are written back normalised.
    """
    if isinstance(spec.gpus, bool) or not isinstance(spec.gpus, int) or spec.gpus < 0:
        raise InvalidOptionError(f"invalid gpus {spec.gpus!r}: expected an integer >= 0")
    if spec.cpu is not None:
        object.__setattr__(spec, "cpu", check_quantity(spec.cpu, "cpu"))
    if spec.memory is not None:
        object.__setattr__(spec, "memory", check_quantity(spec.memory, "memory"))
    if spec.namespace is not None:
        check_dns1123_label(spec.namespace, "namespace")
    if spec.image is not None and (not spec.image.strip() or any(c.isspace() for c in spec.image)):
        raise InvalidOptionError(f"invalid image {spec.image!r}")
    object.__setattr__(spec, "env", check_env(dict(spec.env)))
