"""A real schema registry for the tests: Apicurio Registry, run from its Maven Central build.

``infra/apicurio/pom.xml`` pins the version. ``install()`` has Maven copy the built Quarkus
application (``apicurio-registry-app-<version>-all.tar.gz``) into ``.cache/`` and unpacks it
to ``.cache/apicurio-registry-<version>`` once (``make apicurio``, a step of ``make test``, or
``python -m tests.integration.apicurio install``). ``ApicurioRegistry`` runs it with
``java -jar quarkus-run.jar`` as a child that dies with the test run (``spawn_child``), on
free ports of 127.0.0.1, with its default storage: H2 in memory, so every start is empty.

Apicurio 3.x is Java 21 bytecode; ``find_java()`` picks a Java 21+ (README, "Schema registry").

It is also a pytest plugin (``pytest_plugins = ["tests.integration.apicurio"]``): the
``apicurio_registry`` session fixture, the ``start_apicurio`` factory for a registry of a
test's own, and the registry's log tail in the report of a failed test that used either.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from driftline.schemas import catalog
from driftline.streams.embedded.processes import free_port, spawn_child, stop_child

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "infra" / "apicurio" / "pom.xml"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_COMPLETE = ".complete"  # written last: a folder without it is an unpack that did not finish
MIN_JAVA = 21  # Apicurio 3.x classes are class file version 65
JAVA_ENV = "DRIFTLINE_TEST_APICURIO_JAVA"  # a java binary to use instead of searching
CCOMPAT = "/apis/ccompat/v7"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


class ApicurioUnavailable(RuntimeError):
    """Apicurio Registry cannot be installed or did not start."""


def pinned_version(pom: Path = POM) -> str:
    """The Apicurio Registry version ``infra/apicurio/pom.xml`` pins (``<apicurio.version>``)."""
    found = ET.parse(pom).getroot().find("m:properties/m:apicurio.version", _POM_NS)
    if found is None or not (found.text or "").strip():
        raise ApicurioUnavailable(f"{pom} has no <apicurio.version> property")
    return found.text.strip()


def app_dir(version: str | None = None) -> Path:
    return REPO_ROOT / ".cache" / f"apicurio-registry-{version or pinned_version()}"


def _java_major(java: str) -> int | None:
    """The feature version of a java binary (17, 21, 25), from its home's release file."""
    home = Path(java).resolve().parent.parent
    release = home / "release"
    text = release.read_text(errors="replace") if release.exists() else ""
    if not text:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        text = done.stderr
    match = re.search(r'(?:JAVA_VERSION=|version )"(?:1\.)?(\d+)', text)
    return int(match.group(1)) if match else None


@cache
def find_java(minimum: int = MIN_JAVA) -> str:
    """A java binary of version ``minimum`` or newer.

    $DRIFTLINE_TEST_APICURIO_JAVA if set; else the first of $JAVA_HOME, ``java`` on PATH and
    the JDKs under /usr/lib/jvm (newest first) that is new enough, so a machine whose
    default java is 17 still finds an installed 21+.
    """
    explicit = os.environ.get(JAVA_ENV)
    if explicit:
        major = _java_major(explicit) if os.access(explicit, os.X_OK) else None
        if major is not None and major >= minimum:
            return explicit
        raise ApicurioUnavailable(
            f"{JAVA_ENV}={explicit} is not a Java {minimum}+ binary (version {major or '?'})"
        )
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    candidates.append(shutil.which("java"))
    jvms = Path("/usr/lib/jvm")
    installed = [str(path) for path in jvms.glob("*/bin/java")] if jvms.is_dir() else []
    candidates += sorted(installed, key=lambda java: _java_major(java) or 0, reverse=True)
    seen: dict[str, int | None] = {}
    for java in candidates:
        if not java or java in seen or not os.access(java, os.X_OK):
            continue
        seen[java] = major = _java_major(java)
        if major is not None and major >= minimum:
            return java
    found = ", ".join(f"{java} ({major or '?'})" for java, major in seen.items()) or "none"
    raise ApicurioUnavailable(
        f"Apicurio Registry {pinned_version()} needs Java {minimum}+ (3.x is built for Java "
        f"{MIN_JAVA}); java binaries found: {found}. Install a JDK {minimum}+ "
        f"(Debian/Ubuntu: apt-get install openjdk-{minimum}-jre-headless) or set {JAVA_ENV} "
        "to its java binary"
    )


def install(version: str | None = None) -> Path:
    """Fetch and unpack the pinned Apicurio Registry once; return its quarkus-run.jar folder."""
    version = version or pinned_version()
    target = app_dir(version)
    if (target / _COMPLETE).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None or shutil.which("java") is None:
        raise ApicurioUnavailable(
            "`mvn` or `java` not found on PATH: the integration tests' schema registry "
            "(Apicurio Registry, from Maven Central) is fetched with Maven; install Java and "
            "Maven (Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven), and a "
            f"Java {MIN_JAVA}+ to run it"
        )
    download = target.with_name(target.name + ".download")
    partial = target.with_name(target.name + ".partial")
    for folder in (download, partial):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"fetching Apicurio Registry {version} into {target} (once)", file=sys.stderr)
    done = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dapicurio.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={download}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    archives = list(download.glob("apicurio-registry-app-*-all.tar.gz"))
    if done.returncode != 0 or len(archives) != 1:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ApicurioUnavailable(
            f"Maven could not fetch Apicurio Registry {version} (exit {done.returncode}); "
            f"check network access to the Maven repository and {POM}:\n{tail}"
        )
    with tarfile.open(archives[0]) as archive:
        archive.extractall(partial, filter="data")
    shutil.rmtree(download)
    if not (partial / "quarkus-run.jar").exists():
        raise ApicurioUnavailable(f"{archives[0].name} has no quarkus-run.jar")
    (partial / _COMPLETE).write_text(version + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


class ApicurioRegistry:
    """One Apicurio Registry process on 127.0.0.1, storage in memory.

    Started like Confluent's registry behaves by default: global compatibility BACKWARD
    (Apicurio's own default is no rule). ``properties`` add or replace Quarkus/Apicurio
    settings, passed as ``-D`` options (e.g. basic authentication).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        properties: dict[str, str] | None = None,
        heap: str = "384m",
        version: str | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.port = free_port()
        self.management_port = free_port()
        self.properties = dict(properties or {})
        self.heap = heap
        self.version = version or pinned_version()
        self.log_file = self.work_dir / "apicurio.log"
        self.proc: subprocess.Popen | None = None
        self._archive_partial: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ccompat_url(self) -> str:
        """The Confluent-compatible API: what DRIFTLINE_SCHEMA_REGISTRY_URL points at."""
        return self.url + CCOMPAT

    def command(self) -> list[str]:
        settings = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": str(self.port),
            # The management interface (health, metrics) is on at build time; keep it off 9000.
            "quarkus.management.host": "127.0.0.1",
            "quarkus.management.port": str(self.management_port),
            "apicurio.rules.global.compatibility": "BACKWARD",
        } | self.properties
        folder = install(self.version)
        return [
            find_java(),
            f"-Xmx{self.heap}",
            "-XX:TieredStopAtLevel=1",  # starts faster; a test registry serves little
            self._class_archive_option(folder),
            "-Djava.awt.headless=true",
            *(f"-D{key}={value}" for key, value in settings.items()),
            "-jar",
            str(folder / "quarkus-run.jar"),
        ]

    def _class_archive_option(self, folder: Path) -> str:
        """Class data sharing: start from the classes an earlier run archived (7 s -> 2.5 s
        on a busy 2-core machine), or archive them at exit if none has yet.

        Each run that archives writes its own file and renames it into place only after a
        clean exit, so a starting JVM never maps a half-written archive. A stale or foreign
        archive (another JDK) is skipped by the JVM with a warning in the log.
        """
        archive = folder / "classes.jsa"
        if archive.exists():
            return f"-XX:SharedArchiveFile={archive}"
        self._archive_partial = folder / f"classes.jsa.{os.getpid()}-{self.port}.partial"
        return f"-XX:ArchiveClassesAtExit={self._archive_partial}"

    def start(self, timeout_s: float = 90.0) -> ApicurioRegistry:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        command = self.command()  # installs first: the fetch is not part of the start timeout
        self.proc = spawn_child(command, log_file=self.log_file)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the ccompat API answers (200, or 401 when authentication is on)."""
        deadline = time.monotonic() + timeout_s
        last: object = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise ApicurioUnavailable(
                    f"Apicurio Registry exited (code {code}) before serving; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            try:
                with _DIRECT.open(self.ccompat_url + "/subjects", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
                last = exc
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise ApicurioUnavailable(
            f"Apicurio Registry not serving {self.ccompat_url} after {timeout_s:.0f}s "
            f"({last}); log {self.log_file}:\n{self.log_tail()}"
        )

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One call to the ccompat API (``path`` below /apis/ccompat/v7): (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
        call = urllib.request.Request(
            self.ccompat_url + path, data=data, method=method, headers=headers
        )
        try:
            with _DIRECT.open(call, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def requests_to(self, method: str, path: str) -> int:
        """How many ``method`` requests for ``path`` (below /apis/ccompat/v7, any query) the
        registry's access log shows."""
        pattern = re.compile(rf'method="{method}" path="{re.escape(CCOMPAT + path)}(?:\?[^"]*)?"')
        return len(pattern.findall(self.log_file.read_text(errors="replace")))

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_child(self.proc, grace_s=30, name="apicurio registry")
        partial, self._archive_partial = self._archive_partial, None
        if partial is not None and partial.exists():
            if self.proc.returncode in (0, 143, -15):  # a clean exit wrote it whole
                partial.replace(partial.parent / "classes.jsa")
            else:
                partial.unlink()

    def __enter__(self) -> ApicurioRegistry:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _other_teams_schemas() -> int:
    """A shared registry already holds other teams' schemas: as many as take every pinned id
    (1 to the highest in schemas/pinned_ids.json) and one more, so no driftline schema gets
    its pinned id by accident, however many schema versions are released."""
    return max(i for ids in catalog.pinned_ids().values() for i in ids.values()) + 1


@pytest.fixture(scope="session")
def apicurio_registry(tmp_path_factory: pytest.TempPathFactory):
    """One Apicurio Registry for the session, global compatibility BACKWARD, other subjects in."""
    with ApicurioRegistry(tmp_path_factory.mktemp("apicurio")) as registry:
        for n in range(_other_teams_schemas()):
            schema = {"type": "record", "name": f"Other{n}", "namespace": "acme", "fields": []}
            status, answer = registry.request(
                "POST", f"/subjects/acme.Other{n}/versions", {"schema": json.dumps(schema)}
            )
            assert status == 200, answer
        yield registry


@pytest.fixture
def start_apicurio(tmp_path: Path):
    """Start a registry of this test's own: ``start_apicurio(properties)``; stopped after it."""
    started: list[ApicurioRegistry] = []

    def start(properties: dict[str, str] | None = None) -> ApicurioRegistry:
        registry = ApicurioRegistry(tmp_path / f"apicurio-{len(started)}", properties=properties)
        started.append(registry)
        return registry.start()

    start.started = started  # type: ignore[attr-defined]
    yield start
    for registry in started:
        registry.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test that used a registry shows its log tail in the report."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        registries = [funcargs["apicurio_registry"]] if "apicurio_registry" in funcargs else []
        registries += getattr(funcargs.get("start_apicurio"), "started", [])
        for registry in registries:
            title = f"apicurio log tail ({registry.log_file})"
            report.sections.append((title, registry.log_tail()))
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["install"]:
        print("usage: python -m tests.integration.apicurio install", file=sys.stderr)
        return 2
    try:
        folder = install()
        java = find_java()
    except ApicurioUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Apicurio Registry {pinned_version()}: {folder} (runs on {java})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
