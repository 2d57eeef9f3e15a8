"""Who may associate with a node: allowed AE titles and IP networks, checked with dcmtk."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.net.storage import AccessPolicy
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor
from support import storescu, wait_for


class HeldInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]

    def validate(self) -> bool:
        return False


class KeepingPipeline(AbstractPipeline):
    """Keeps every instance it receives in the spool (its input never validates)."""

    input = {"any": HeldInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return None


def echoscu(
    port: int, aet: str = "ECHOSCU", aec: str = "DICOMFLOW"
) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-aet", aet, "-aec", aec, "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def spooled(node: Node) -> list[Path]:
    """The instance files in the node's spool, once written (the journal writes behind)."""
    node.spool.settle()
    return list(node.spool.root.rglob("*.dcm"))


@pytest.fixture
def series(tmp_path: Path) -> list[Path]:
    return write_series(make_ct_series(2, rows=16, columns=16), tmp_path / "series")


def test_echoscu_gets_an_answer(make_node):
    node = make_node(KeepingPipeline)
    result = echoscu(node.port)
    assert result.returncode == 0, result.stderr
    assert node.counters.refused == 0


def test_only_allowed_ae_titles_may_associate(make_node, tmp_path: Path, series: list[Path]):
    node = make_node(KeepingPipeline, allowed_ae_titles=["GOOD"])

    refused = echoscu(node.port, aet="EVIL")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    assert storescu(node.port, series, aet="EVIL", check=False).returncode != 0
    assert node.counters.received == 0
    assert spooled(node) == []
    wait_for(lambda: node.counters.refused == 2, timeout_s=5, what="two refusals counted")

    assert echoscu(node.port, aet="GOOD").returncode == 0
    storescu(node.port, series, aet="GOOD")
    assert node.counters.received == len(series)
    assert len(spooled(node)) == len(series)
    assert node.counters.refused == 2


def test_an_association_for_another_called_ae_title_is_rejected(
    make_node, series: list[Path], caplog: pytest.LogCaptureFixture
):
    node = make_node(KeepingPipeline)

    refused = echoscu(node.port, aec="OTHERNODE")
    assert refused.returncode != 0
    assert "Called AE Title Not Recognized" in refused.stdout + refused.stderr
    assert storescu(node.port, series, aec="ANY-SCP", check=False).returncode != 0
    assert node.counters.received == 0 and spooled(node) == []
    wait_for(lambda: node.counters.refused == 2, timeout_s=5, what="two refusals counted")
    lines = [r.getMessage() for r in caplog.records if "called AE title" in r.getMessage()]
    assert len(lines) == 2 and "'OTHERNODE' is not DICOMFLOW" in lines[0]

    assert echoscu(node.port).returncode == 0


def test_any_called_ae_title_is_accepted_when_not_required(make_node, series: list[Path]):
    node = make_node(KeepingPipeline, require_called_ae_title=False)

    assert echoscu(node.port, aec="OTHERNODE").returncode == 0
    storescu(node.port, series, aec="ANY-SCP")
    assert node.counters.received == len(series) and node.counters.refused == 0


@pytest.mark.parametrize(
    ("allowed_ips", "accepted"),
    [
        pytest.param(["10.0.0.0/8"], False, id="other-network"),
        pytest.param(["10.0.0.0/8", "127.0.0.0/8"], True, id="loopback-network"),
        pytest.param(["127.0.0.1"], True, id="loopback-address"),
    ],
)
def test_only_allowed_ip_networks_may_connect(
    make_node, tmp_path: Path, series: list[Path], allowed_ips: list[str], accepted: bool
):
    node = make_node(KeepingPipeline, allowed_ips=allowed_ips)

    echo = echoscu(node.port)
    store = storescu(node.port, series, check=False)

    assert (echo.returncode == 0) is accepted
    assert (store.returncode == 0) is accepted
    assert node.counters.received == (len(series) if accepted else 0)
    assert len(spooled(node)) == (len(series) if accepted else 0)
    assert node.counters.refused == (0 if accepted else 2)


@pytest.mark.parametrize("title", ["", "   ", "A" * 17, "BACK\\SLASH", "ÉCHO", "TAB\tTAB"])
def test_access_policy_rejects_an_invalid_ae_title(title: str):
    with pytest.raises(ValueError, match="allowed_ae_titles"):
        AccessPolicy.build([title], [])


@pytest.mark.parametrize("network", ["nonsense", "300.1.2.3", "10.0.0.0/33", "", "::1/129"])
def test_access_policy_rejects_an_invalid_ip_network(network: str):
    with pytest.raises(ValueError, match="allowed_ips"):
        AccessPolicy.build([], [network])


def test_access_policy_allows_what_it_lists():
    policy = AccessPolicy.build([" GOOD "], ["127.0.0.0/8", "::1"])
    assert policy.allows_ae_title("GOOD")
    assert not policy.allows_ae_title("EVIL")
    assert policy.allows_ip("127.0.0.1")
    assert policy.allows_ip("::1")
    assert not policy.allows_ip("10.1.2.3")
    assert not policy.allows_ip("not an address")
    everyone = AccessPolicy.build([], [])
    assert everyone.allows_ae_title("ANYONE")
    assert everyone.allows_ip("192.0.2.1")
