"""The drill's federation: one real node per partner, each an ``allied serve`` process on
127.0.0.1 that syncs from its peers on its own, joined through relays.

Setting up is what each partner's operators would do by hand (``allied init``, ``partner
add`` with pinned keys and tokens, ``label add``, ``peer add``), done through the same core
functions the command line calls. The folders stay where they are when the drill ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from allied import config as config_
from allied.errors import AlliedError, ConfigError
from allied.exercise.relay import Relay
from allied.exercise.scenario import LabelSpec, Scenario
from allied.federation.peers import add_peer
from allied.node import Node, init_node

#: how long a node may take to listen after it is started
START_TIMEOUT = 60.0


class DrillError(AlliedError):
    """The drill itself could not go on (a node would not start, say)."""


@dataclass
class Member:
    """One partner's node in the drill."""

    name: str
    directory: Path
    identity_id: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


class Cluster:
    def __init__(self, scenario: Scenario, root: Path, clock: Callable[[], float]) -> None:
        self.scenario = scenario
        self.root = root
        self.clock = clock
        self.members: dict[str, Member] = {}
        #: (puller, source) -> the relay the puller's pulls from the source go through
        self.relays: dict[tuple[str, str], Relay] = {}
        #: (puller, source) -> the token file the puller presents to the source
        self.tokens: dict[tuple[str, str], Path] = {}

    # -- setting up -------------------------------------------------------------------------

    def build(self) -> None:
        if os.environ.get(config_.DATABASE_ENV):
            raise ConfigError(
                f"{config_.DATABASE_ENV} is set: it would put every node of the drill in one "
                "database; a drill keeps each node's store in its folder, so unset it"
            )
        scenario = self.scenario
        nodes, tokens, logs = self.root / "nodes", self.root / "tokens", self.root / "logs"
        for folder in (nodes, tokens, logs):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(tokens, 0o700)
        keys: dict[str, Path] = {}
        for name, partner in scenario.partners.items():
            directory = nodes / name.lower()
            made = init_node(
                directory,
                name=partner.organisation,
                nation=partner.nation,
                communities=partner.communities,
            )
            if scenario.settings:
                settings = config_.resolve_settings(
                    {**_raw_settings(made), **scenario.settings}, environ={}
                )
                made = replace(made, settings=settings)
                (directory / config_.CONFIG_FILE).write_text(config_.render(made), "utf-8")
            keys[name] = made.public_key_path
            self.members[name] = Member(
                name, directory, made.identity_id, _free_port(), logs / f"{name.lower()}.log"
            )
        for name, member in self.members.items():
            sources = scenario.sources_of(name)
            with Node.open(member.directory) as node:
                for other, partner in scenario.partners.items():
                    if other == name:
                        continue
                    # the token ``other`` presents here, if it pulls from this node
                    token = tokens / f"{other.lower()}-at-{name.lower()}.token" if (
                        name in scenario.sources_of(other)
                    ) else None  # fmt: skip
                    node.add_partner(
                        other,
                        nation=partner.nation,
                        clearances=[f"{p}={level}" for p, level in partner.clearances.items()],
                        communities=partner.communities,
                        categories=partner.categories,
                        key_file=keys[other],
                        token_file=token,
                        identity_id=self.members[other].identity_id,
                    )
                    if token is not None:
                        self.tokens[(other, name)] = token
                for label in scenario.labels:
                    _add_label(node, scenario.label_at(label, name), name, member.identity_id)
            del sources
        for (puller, source), _token in self.tokens.items():
            relay = Relay(puller, source, self.members[source].url, self.clock)
            relay.start()
            self.relays[(puller, source)] = relay
        for (puller, source), token in self.tokens.items():
            with Node.open(self.members[puller].directory) as node:
                add_peer(
                    node, source, self.relays[(puller, source)].url, partner=source,
                    token_file=token,
                )  # fmt: skip

    # -- running ----------------------------------------------------------------------------

    def start_all(self) -> None:
        for name in self.members:
            self._spawn(name)
        for name in self.members:
            self._wait_listening(name)

    def start(self, name: str) -> None:
        self._spawn(name)
        self._wait_listening(name)

    def _spawn(self, name: str) -> None:
        member = self.members[name]
        command = [
            _allied(), "--node", str(member.directory), "serve", "--port", str(member.port),
            "--sync-interval", str(self.scenario.sync_interval),
        ]  # fmt: skip
        setpriv = shutil.which("setpriv")
        if setpriv is not None:  # the node goes when the runner does, however it ends
            command = [setpriv, "--pdeathsig", "TERM", *command]
        with open(member.log, "ab") as log:
            member.process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "ALLIED_NODE": ""},
                start_new_session=True,  # a Ctrl-C at the terminal reaches the runner only
            )

    def _wait_listening(self, name: str) -> None:
        member = self.members[name]
        assert member.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", member.port), timeout=1):
                    pass
                time.sleep(0.05)
                if member.process.poll() is None:  # ours listens there, not another
                    return
                raise OSError("the node exited")
            except OSError:
                if member.process.poll() is not None or time.monotonic() > deadline:
                    tail = member.log.read_text(errors="replace")[-2000:]
                    raise DrillError(f"the node of {name} did not start:\n{tail}") from None
                time.sleep(0.05)

    def stop(self, name: str) -> None:
        """Stop a node as its operators would (SIGINT): it finishes what it is writing."""
        member = self.members[name]
        process = member.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        member.process = None

    def running(self, name: str) -> bool:
        process = self.members[name].process
        return process is not None and process.poll() is None

    def close(self) -> None:
        """Every node stopped and every relay closed, even if stopping one fails (a second
        Ctrl-C, say): that one is killed, the others still stopped."""
        failure: BaseException | None = None
        for name, member in self.members.items():
            try:
                self.stop(name)
            except BaseException as error:
                if member.process is not None and member.process.poll() is None:
                    member.process.kill()
                failure = failure or error
        for relay in self.relays.values():
            relay.stop()
        if failure is not None:
            raise failure


def _add_label(node: Node, spec: LabelSpec, own_name: str, own_identity: str) -> None:
    """The label at one node; a named recipient that is the node itself is no partner of
    it, so it is named by its identity."""
    node.add_label(
        spec.name,
        tlp=spec.tlp,
        policy=spec.policy,
        classification=spec.classification,
        releasable_to=spec.releasable_to,
        handling=spec.handling,
        recipients=[r for r in spec.recipients if r != own_name],
        blind_match=spec.blind_match,
        recipient_ids=[own_identity] if own_name in spec.recipients else [],
    )


def _raw_settings(made: config_.NodeConfig) -> dict[str, str]:
    return {name: config_.setting_text(value) for name, value in made.settings.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _allied() -> str:
    """The ``allied`` command of this installation."""
    beside = Path(sys.executable).parent / "allied"
    if beside.exists():
        return str(beside)
    found = shutil.which("allied")
    if found is None:
        raise DrillError("the 'allied' command is not installed (pip install -e .)")
    return found
