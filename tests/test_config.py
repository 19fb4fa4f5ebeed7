"""Configuration: layering of default, file and environment, validation messages, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from synod.cli import config_cmd
from synod.cli.main import _Parser
from synod.config import (
    CHAIN_NAMES,
    BtcChainConfig,
    ConfigError,
    EvmChainConfig,
    SynodConfig,
    default_config_text,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_synod_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that read os.environ see only the SYNOD__ variables they set."""
    for name in list(os.environ):
        if name.startswith("SYNOD__"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, data: Any, name: str = "override.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def error_of(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return str(info.value)


# --- the default ----------------------------------------------------------------------------------


def test_default_loads() -> None:
    cfg = load_config(env={})
    assert cfg.committee.top_n == 10_000
    assert cfg.committee.active_n == 1_000
    assert cfg.committee.threshold_ratio == 0.8
    assert cfg.committee.threshold == 800
    assert cfg.committee.epoch_blocks == 200
    assert cfg.timeouts.aggregator_rotate_s == 5.0
    assert cfg.timeouts.session_max_s == 60.0
    assert cfg.withdraw.max_in_flight_per_chain == 50
    assert cfg.withdraw.retry_policy.max_retry == 5
    assert cfg.withdraw.retry_policy.backoff_s == 5.0
    assert cfg.transition.pause_withdraw_during_switch is True
    assert cfg.fee_policy.yearly_rise_sized_for == 3.0
    assert cfg.store.backend == "sqlite" and cfg.store.postgres_dsn is None
    assert cfg.runtime.poll_interval_s == 1.0
    assert cfg.enabled_chains() == CHAIN_NAMES


def test_chain_accessor() -> None:
    cfg = load_config(env={})
    btc = cfg.chain("btc")
    assert isinstance(btc, BtcChainConfig)
    assert (btc.fee_sats_per_v_byte, btc.confirmations) == (25, 6)
    eth, bnb = cfg.chain("eth"), cfg.chain("bnb")
    assert isinstance(eth, EvmChainConfig) and isinstance(bnb, EvmChainConfig)
    assert (eth.chain_id, eth.confirmations, eth.gas_limit) == (1, 12, 180_000)
    assert (bnb.chain_id, bnb.confirmations) == (56, 15)
    assert eth.gas_price_wei == 30 * 10**9
    assert cfg.chain("trx").fee_limit_sun == 30_000_000
    assert cfg.chain("sol").priority_fee_micro_lamports == 2000
    assert [cfg.chain(n).confirmations for n in CHAIN_NAMES] == [6, 12, 15, 19, 32]
    with pytest.raises(KeyError, match="doge"):
        cfg.chain("doge")


def test_packaged_default_equals_repository_default() -> None:
    repo_default = (REPO / "config" / "default.json").read_text(encoding="utf-8")
    assert default_config_text() == repo_default


def test_default_round_trips_with_camel_case_keys() -> None:
    cfg = load_config(env={})
    assert cfg.to_dict() == json.loads(default_config_text())
    assert SynodConfig.model_validate(cfg.to_dict()) == cfg


def test_models_are_frozen() -> None:
    cfg = load_config(env={})
    with pytest.raises(ValueError, match="frozen"):
        cfg.committee.top_n = 5  # type: ignore[misc]


def test_threshold_rounds_up_on_the_written_decimal() -> None:
    cfg = load_config(
        env={"SYNOD__COMMITTEE__ACTIVEN": "10", "SYNOD__COMMITTEE__THRESHOLDRATIO": "0.7"}
    )
    assert cfg.committee.threshold == 7
    cfg = load_config(
        env={"SYNOD__COMMITTEE__ACTIVEN": "7", "SYNOD__COMMITTEE__THRESHOLDRATIO": "0.6"}
    )
    assert cfg.committee.threshold == 5


# --- file overrides -------------------------------------------------------------------------------


def test_file_override_deep_merges(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "withdraw": {"retryPolicy": {"maxRetry": 9}},
            "chains": {"btc": {"feeSatsPerVByte": 40}, "sol": {"enabled": False}},
        },
    )
    cfg = load_config(path, env={})
    assert cfg.withdraw.retry_policy.max_retry == 9
    assert cfg.withdraw.retry_policy.backoff_ms == 5000  # sibling kept
    assert cfg.withdraw.max_in_flight_per_chain == 50
    assert cfg.chain("btc").fee_sats_per_v_byte == 40
    assert cfg.chain("btc").confirmations == 6
    assert cfg.chain("eth").gas_price_gwei == 30
    assert "sol" not in cfg.enabled_chains()


def test_file_path_may_be_str(tmp_path: Path) -> None:
    path = write(tmp_path, {"runtime": {"pollIntervalMs": 250}})
    assert load_config(str(path), env={}).runtime.poll_interval_ms == 250


def test_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    message = error_of(missing)
    assert str(missing) in message and "cannot read" in message


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "committee": {\n    "topN": 10,\n  }\n}\n', "broken.json")
    message = error_of(path)
    assert f"file {path}" in message
    assert "line 4" in message


def test_file_must_hold_an_object(tmp_path: Path) -> None:
    assert "JSON object" in error_of(write(tmp_path, "[1, 2]"))


def test_duplicate_keys_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, '{"runtime": {"pollIntervalMs": 5, "pollIntervalMs": 6}}')
    assert "duplicate key 'pollIntervalMs'" in error_of(path)


def test_invalid_file_value_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"withdraw": {"maxInFlightPerChain": 0}})
    assert error_of(path) == (
        "withdraw.maxInFlightPerChain: Input should be greater than or equal to 1 "
        f"(from file {path})"
    )


def test_unknown_file_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, {"chains": {"btc": {"feeSatsPerByte": 30}}})
    message = error_of(path)
    assert message.startswith("chains.btc.feeSatsPerByte: Extra inputs are not permitted")
    assert str(path) in message


def test_unknown_chain_and_section_rejected(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, {"chains": {"doge": {"enabled": True}}, "extra": 1}))
    assert "chains.doge: Extra inputs are not permitted" in message
    assert "extra: Extra inputs are not permitted" in message


def test_snake_case_keys_rejected_in_files(tmp_path: Path) -> None:
    # Accepting both spellings would let one silently shadow the other.
    path = write(tmp_path, {"withdraw": {"max_in_flight_per_chain": 3}})
    assert "withdraw.max_in_flight_per_chain: Extra inputs" in error_of(path)


def test_strings_are_not_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, {"committee": {"topN": "10000"}})
    assert error_of(path).startswith("committee.topN: Input should be a valid integer")


def test_section_replaced_by_a_scalar(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, {"timeouts": 5}))
    assert message.startswith("timeouts: ") and str(tmp_path) in message


# --- environment overrides ------------------------------------------------------------------------


def test_env_override() -> None:
    cfg = load_config(
        env={
            "SYNOD__WITHDRAW__MAXINFLIGHTPERCHAIN": "10",
            "SYNOD__CHAINS__BTC__FEESATSPERVBYTE": "30",
            "SYNOD__transition__pauseWithdrawDuringSwitch": "false",
            "SYNOD__WITHDRAW__RETRY_POLICY__MAX_RETRY": "2",
            "SYNOD_UNRELATED": "x",
            "PATH": "/bin",
        }
    )
    assert cfg.withdraw.max_in_flight_per_chain == 10
    assert cfg.chain("btc").fee_sats_per_v_byte == 30
    assert cfg.transition.pause_withdraw_during_switch is False
    assert cfg.withdraw.retry_policy.max_retry == 2


def test_env_beats_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, {"withdraw": {"maxInFlightPerChain": 20, "retryPolicy": {"maxRetry": 1}}}
    )
    cfg = load_config(path, env={"SYNOD__WITHDRAW__MAXINFLIGHTPERCHAIN": "7"})
    assert cfg.withdraw.max_in_flight_per_chain == 7
    assert cfg.withdraw.retry_policy.max_retry == 1


def test_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNOD__RUNTIME__POLLINTERVALMS", "300")
    assert load_config().runtime.poll_interval_ms == 300


def test_env_string_values() -> None:
    cfg = load_config(
        env={
            "SYNOD__STORE__BACKEND": "postgres",
            "SYNOD__STORE__POSTGRESDSN": "postgresql://synod@db/synod",
            "SYNOD__STORE__SQLITEPATH": "123",  # a string key keeps digits as text
        }
    )
    assert cfg.store.backend == "postgres"
    assert cfg.store.postgres_dsn == "postgresql://synod@db/synod"
    assert cfg.store.sqlite_path == "123"
    assert load_config(env={"SYNOD__STORE__POSTGRESDSN": "null"}).store.postgres_dsn is None


def test_env_json_object_merges_and_specific_wins() -> None:
    cfg = load_config(
        env={
            "SYNOD__CHAINS__ETH": '{"gasPriceGwei": 0.5, "gasLimit": 90000}',
            "SYNOD__CHAINS__ETH__GASLIMIT": "100000",
        }
    )
    eth = cfg.chain("eth")
    assert (eth.gas_price_gwei, eth.gas_limit, eth.chain_id) == (0.5, 100_000, 1)
    assert eth.gas_price_wei == 500_000_000


def test_invalid_env_value_names_key_and_variable() -> None:
    message = error_of(env={"SYNOD__WITHDRAW__MAXINFLIGHTPERCHAIN": "0"})
    assert message == (
        "withdraw.maxInFlightPerChain: Input should be greater than or equal to 1 "
        "(from env SYNOD__WITHDRAW__MAXINFLIGHTPERCHAIN)"
    )


def test_env_text_for_a_number_fails() -> None:
    message = error_of(env={"SYNOD__CHAINS__SOL__PRIORITYFEEMICROLAMPORTS": "lots"})
    assert message.startswith("chains.sol.priorityFeeMicroLamports: Input should be a valid")
    assert "SYNOD__CHAINS__SOL__PRIORITYFEEMICROLAMPORTS" in message


def test_unknown_env_path_is_named() -> None:
    message = error_of(env={"SYNOD__CHAINS__BTC__FEE": "1"})
    assert "SYNOD__CHAINS__BTC__FEE" in message and "chains.btc.FEE" in message
    assert "feeSatsPerVByte" in message  # the keys that do exist
    assert "SYNOD__NOPE" in error_of(env={"SYNOD__NOPE": "1"})
    assert "not a section" in error_of(env={"SYNOD__RUNTIME__POLLINTERVALMS__X": "1"})
    assert "empty key" in error_of(env={"SYNOD__RUNTIME____POLLINTERVALMS": "1"})


def test_env_same_key_twice_rejected() -> None:
    message = error_of(
        env={"SYNOD__RUNTIME__POLLINTERVALMS": "1", "SYNOD__runtime__pollIntervalMs": "2"}
    )
    assert "runtime.pollIntervalMs" in message and "also set by" in message


# --- validation rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("COMMITTEE__THRESHOLDRATIO", "0.5", "committee.thresholdRatio"),
        ("COMMITTEE__THRESHOLDRATIO", "1.01", "committee.thresholdRatio"),
        ("COMMITTEE__TOPN", "0", "committee.topN"),
        ("COMMITTEE__TOPN", "999", "committee.activeN"),
        ("COMMITTEE__EPOCHBLOCKS", "0", "committee.epochBlocks"),
        ("TRANSITION__TRIGGERCHANGERATIO", "0", "transition.triggerChangeRatio"),
        ("TRANSITION__TRIGGERCHANGERATIO", "1.5", "transition.triggerChangeRatio"),
        ("TRANSITION__PAUSEWITHDRAWDURINGSWITCH", "1", "transition.pauseWithdrawDuringSwitch"),
        ("TIMEOUTS__AGGREGATORROTATEMS", "0", "timeouts.aggregatorRotateMs"),
        ("TIMEOUTS__RTTBOUNDMS", "-1", "timeouts.rttBoundMs"),
        ("TIMEOUTS__AGGREGATORROTATEMS", "60000", "timeouts.aggregatorRotateMs"),
        ("WITHDRAW__RETRYPOLICY__MAXRETRY", "-1", "withdraw.retryPolicy.maxRetry"),
        ("CHAINS__BTC__FEESATSPERVBYTE", "-0.5", "chains.btc.feeSatsPerVByte"),
        ("CHAINS__BTC__FEESATSPERVBYTE", "Infinity", "chains.btc.feeSatsPerVByte"),
        ("CHAINS__BTC__CONFIRMATIONS", "0", "chains.btc.confirmations"),
        ("CHAINS__ETH__GASPRICEGWEI", "-1", "chains.eth.gasPriceGwei"),
        ("CHAINS__BNB__GASLIMIT", "20000", "chains.bnb.gasLimit"),
        ("CHAINS__BNB__CHAINID", "0", "chains.bnb.chainId"),
        ("CHAINS__TRX__FEELIMITSUN", "-1", "chains.trx.feeLimitSun"),
        ("CHAINS__SOL__PRIORITYFEEMICROLAMPORTS", "1.5", "chains.sol.priorityFeeMicroLamports"),
        ("FEEPOLICY__YEARLYRISESIZEDFOR", "0", "feePolicy.yearlyRiseSizedFor"),
        ("STORE__BACKEND", "mysql", "store.backend"),
        ("STORE__BACKEND", "postgres", "store.postgresDsn"),
        ("RUNTIME__POLLINTERVALMS", "0", "runtime.pollIntervalMs"),
    ],
)
def test_rule_violations_name_the_key(var: str, value: str, key: str) -> None:
    message = error_of(env={f"SYNOD__{var}": value})
    assert message.startswith(f"{key}: ")
    assert f"env SYNOD__{var}" in message


def test_cross_field_error_names_both_sources(tmp_path: Path) -> None:
    path = write(tmp_path, {"timeouts": {"aggregatorRotateMs": 9000}})
    message = error_of(path, env={"SYNOD__TIMEOUTS__SESSIONMAXMS": "8000"})
    assert message.startswith("timeouts.aggregatorRotateMs: must be less than sessionMaxMs (8000)")
    assert f"file {path}" in message and "env SYNOD__TIMEOUTS__SESSIONMAXMS" in message


def test_several_problems_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"committee": {"topN": 0}, "runtime": {"pollIntervalMs": 0}})
    message = error_of(path)
    assert "\n" not in message
    assert "committee.topN: " in message and "runtime.pollIntervalMs: " in message


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- synod config ---------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = _Parser(prog="synod")
    config_cmd.add_parser(
        parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    )
    args = parser.parse_args(["config", *argv])
    code: int = args.run(args)
    return code


def test_cli_show_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, {"chains": {"btc": {"feeSatsPerVByte": 40}}})
    monkeypatch.setenv("SYNOD__RUNTIME__POLLINTERVALMS", "250")
    assert cli("show", "--file", str(path), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["chains"]["btc"]["feeSatsPerVByte"] == 40
    assert shown["runtime"]["pollIntervalMs"] == 250
    assert shown["committee"] == json.loads(default_config_text())["committee"]


def test_cli_show_human(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("show") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["withdraw.maxInFlightPerChain", "50"] for line in lines)
    assert any(line.split() == ["store.postgresDsn", "null"] for line in lines)


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("check") == 0
    assert capsys.readouterr().out == "ok\n"
    path = write(tmp_path, {"withdraw": {"maxInFlightPerChain": 0}})
    assert cli("check", "--file", str(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("synod config: error: withdraw.maxInFlightPerChain: ")
    assert str(path) in err


def test_cli_check_malformed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "{", "bad.json")
    assert cli("check", "--file", str(path)) == 2
    assert f"file {path}: malformed JSON at line 1" in capsys.readouterr().err


def test_cli_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli()
    assert info.value.code == 2


def test_evm_custody_mode_selects_ledger_nonce_chains() -> None:
    assert load_config(env={}).chains.nonce_chains == frozenset()
    cfg = load_config(env={"SYNOD__CHAINS__BNB__CUSTODY": "eoa"})
    assert cfg.chains.bnb.custody == "eoa" and cfg.chains.nonce_chains == {"bnb"}
    assert "chains.eth.custody" in error_of(env={"SYNOD__CHAINS__ETH__CUSTODY": "multisig"})
