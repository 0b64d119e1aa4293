"""The Kafka Streams contender's build: Maven, on first use, into the git-ignored ``.cache/kstreams``.

The jar is rebuilt whenever the pom or a Java source changed (a digest of them is kept beside the
build), so a run never measures stale code and an unchanged tree costs no Maven call. The Kafka
version is the broker's: ``scripts/kafka/pom.xml`` pins it, and the contender's pom must say the
same (checked here, so the two cannot drift apart silently).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from support.procs import ROOT

SOURCES = ROOT / "bench" / "contenders" / "kstreams"
BROKER_POM = ROOT / "scripts" / "kafka" / "pom.xml"
OUT = ROOT / ".cache" / "kstreams"
JAR = OUT / "target" / "kstreams-bench.jar"
LIB = OUT / "target" / "lib"
STAMP = OUT / "sources.sha256"
MAIN_CLASS = "io.streampulse.bench.KStreamsBench"
#: The JVM's own defaults (collector, heap: a quarter of RAM); its resident size is what the table
#: reports. Kafka's logging at WARN, into the run's log.
JVM_OPTIONS = ("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",)


class BuildError(RuntimeError):
    """Maven or a JDK is missing, or the build failed: the contender cannot run."""


def _kafka_version(pom: Path) -> str:
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not found:
        raise BuildError(f"{pom}: no <kafka.version>")
    return found.group(1)


def kafka_version() -> str:
    """The Kafka (and so Kafka Streams) version the contender is built with."""
    return _kafka_version(SOURCES / "pom.xml")


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in SOURCES.rglob("*") if p.is_file() and p.suffix in {".java", ".xml"}):
        h.update(str(path.relative_to(SOURCES)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def ensure_built() -> None:
    """Build the jar and its runtime classpath if they are missing or older than the sources."""
    broker, ours = _kafka_version(BROKER_POM), _kafka_version(SOURCES / "pom.xml")
    if broker != ours:
        raise BuildError(f"bench/contenders/kstreams/pom.xml has Kafka {ours}, the broker {broker}")
    digest = _digest()
    if JAR.exists() and LIB.is_dir() and STAMP.exists() and STAMP.read_text() == digest:
        return
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} is required for the kafka-streams contender")
    if LIB.exists():
        shutil.rmtree(LIB)  # a changed pom must not leave old jars on the classpath
    done = subprocess.run(
        ["mvn", "-q", "-B", "package", f"-Dkstreams.out={OUT}"],
        cwd=SOURCES,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not JAR.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise BuildError("mvn package failed: " + " | ".join(tail))
    STAMP.write_text(digest)


def command() -> list[str]:
    """``java ...`` up to the contender's own arguments (the harness appends the common ones)."""
    ensure_built()
    return ["java", *JVM_OPTIONS, "-cp", f"{JAR}:{LIB}/*", MAIN_CLASS]
