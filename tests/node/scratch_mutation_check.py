import os, signal
import pytest
import test_failures as tf
import dicomflow.node.runner as runner

def test_kill_only_worker(make_node, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_kill_group", lambda pid: os.kill(pid, signal.SIGKILL))
    tf.test_a_timed_out_round_is_killed_with_the_processes_it_started(make_node, tmp_path)

def test_short_lines(make_node, storescp, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(runner, "MAX_LOG_LINE", 100)
    tf.test_5_mb_of_output_reaches_the_log_and_the_round_succeeds(make_node, storescp, tmp_path, caplog)
