"""The lm-evaluation-harness model "difusi": LLaDA's likelihood estimate, the sampler with stop
sequences, and whole local tasks run offline through lm-eval's Python API and `difusi lm-eval`."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from difusi import SamplerSettings, generate, generate_answers, log_likelihood  # noqa: E402
from difusi.cli import main  # noqa: E402
from difusi.errors import DifusiError  # noqa: E402
from difusi.evaluation.lm_eval_model import DifusiLM, request_generator  # noqa: E402
from difusi.generation import SAMPLER_FIELDS  # noqa: E402

MODEL_ARGS = {"mc_num": 8, "mc_batch_size": 4, "steps": 16, "gen_length": 16, "block_length": 8}


@pytest.fixture(scope="module")
def lm(tiny_checkpoint: Path) -> DifusiLM:
    return DifusiLM(pretrained=str(tiny_checkpoint), device="cpu", **MODEL_ARGS)


def request(kind: str, *arguments) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=arguments, idx=0)


def test_one_token_continuation_is_the_exact_log_probability(lm):
    context = "Ibu kota Indonesia adalah"
    word = next(w for w in (" dan", " di", " yang", ".", ",") if len(lm._encode_pair(context, w)[1]) == 1)
    context_ids, [token] = lm._encode_pair(context, word)

    [(value, is_greedy)] = lm.loglikelihood([request("loglikelihood", context, word)])

    exact = log_likelihood(lm.model, context_ids, [token], mc_num=4, batch_size=4)
    masked = torch.tensor([[*context_ids, lm.model.config.mask_token_id]])
    with torch.no_grad():
        direct = lm.model(masked).logits[0, -1].float().log_softmax(-1)[token].item()
    assert value == pytest.approx(exact, abs=1e-5)
    assert value == pytest.approx(direct, abs=1e-5)
    assert is_greedy is False  # the greedy check is off by default, as in LLaDA's published runs


def test_longer_continuations_use_the_same_estimator_and_seed(tiny_checkpoint):
    lm = DifusiLM(pretrained=str(tiny_checkpoint), device="cpu", seed=3, **MODEL_ARGS)
    context, continuation = "Saya suka makan", " nasi goreng pedas"
    context_ids, continuation_ids = lm._encode_pair(context, continuation)
    assert len(continuation_ids) > 1

    [(value, _)] = lm.loglikelihood([request("loglikelihood", context, continuation)])

    expected = log_likelihood(
        lm.model,
        context_ids,
        continuation_ids,
        mc_num=8,
        batch_size=4,
        generator=request_generator(3, context_ids, continuation_ids),
    )
    assert value == pytest.approx(expected, abs=1e-6)


def test_a_requests_score_depends_on_neither_its_neighbours_nor_their_order(tiny_checkpoint):
    lm = DifusiLM(pretrained=str(tiny_checkpoint), device="cpu", **MODEL_ARGS)
    pairs = [("Saya suka makan", " nasi goreng pedas"), ("Ibu kota Indonesia", " adalah Jakarta"),
             ("Pulau terbesar", " Kalimantan")]  # fmt: skip
    together = [value for value, _ in lm.loglikelihood([request("loglikelihood", *p) for p in pairs])]
    backwards = [value for value, _ in lm.loglikelihood([request("loglikelihood", *p) for p in pairs[::-1]])]
    alone = [lm.loglikelihood([request("loglikelihood", *p)])[0][0] for p in pairs]
    assert together == backwards[::-1] == alone
    assert len(set(together)) == 3


def test_greedy_check_follows_the_sampler(tiny_checkpoint):
    lm = DifusiLM(pretrained=str(tiny_checkpoint), device="cpu", check_greedy=True, **MODEL_ARGS)
    context = lm.tok_encode("Halo")
    output = generate(lm.model, torch.tensor([context]), steps=3, gen_length=3, block_length=3)
    greedy = output[0, len(context) :].tolist()
    other = [(greedy[0] + 1) % lm.model.config.mask_token_id, *greedy[1:]]

    results = lm._loglikelihood_tokens([(("", ""), context, greedy), (("", ""), context, other)])

    assert [is_greedy for _, is_greedy in results] == [True, False]


def test_rolling_loglikelihood_conditions_on_bos_and_spans_windows(lm, tiny_checkpoint):
    text = "Jakarta adalah ibu kota Indonesia dan kota terbesar di negeri ini."
    ids = lm.tok_encode(text, add_special_tokens=False)

    [value] = lm.loglikelihood_rolling([request("loglikelihood_rolling", text)])

    generator = request_generator(lm.seed, [lm.prefix_token_id], ids)
    expected = log_likelihood(lm.model, [lm.prefix_token_id], ids, 8, 4, generator=generator)
    assert value == pytest.approx(expected, abs=1e-6)
    short = DifusiLM(pretrained=str(tiny_checkpoint), device="cpu", max_length=8, **MODEL_ARGS)
    [windowed] = short.loglikelihood_rolling([request("loglikelihood_rolling", text)])
    assert len(ids) > 8 and math.isfinite(windowed) and windowed < 0


def test_generate_until_stops_at_the_stop_sequence(lm):
    prompt = "Ceritakan tentang Jakarta."
    [whole] = lm.generate_until([request("generate_until", prompt, {"until": []})])
    stop = whole[len(whole) // 2 : len(whole) // 2 + 2]
    assert len(whole) > 4 and stop

    [cut] = lm.generate_until([request("generate_until", prompt, {"until": [stop], "max_gen_toks": 256})])

    assert cut == whole[: whole.find(stop)]
    assert stop not in cut


def test_task_generation_kwargs_override_the_sampler(lm):
    long, short = lm.generate_until(
        [
            request("generate_until", "Halo", {"until": []}),
            request("generate_until", "Halo", {"until": [], "gen_length": 4, "block_length": 4, "steps": 4}),
        ]
    )
    ids = [lm.tok_encode("Halo")]
    [(expected_short, _)] = generate_answers(
        lm.model, lm.tokenizer, ids, SamplerSettings(4, 4, 4), 1, progress=False
    )
    [(expected_long, _)] = generate_answers(lm.model, lm.tokenizer, ids, lm.sampler, 1, progress=False)
    assert (short, long) == (expected_short, expected_long)


def test_bad_model_args_fail_with_one_clear_line(tiny_checkpoint):
    with pytest.raises(DifusiError, match="unknown difusi model_args mc_nmu"):
        DifusiLM(pretrained=str(tiny_checkpoint), mc_nmu=8)
    with pytest.raises(DifusiError, match="batch_size 'auto' is not supported"):
        DifusiLM(pretrained=str(tiny_checkpoint), batch_size="auto")
    with pytest.raises(DifusiError, match="not a multiple of mc_batch_size"):
        DifusiLM(pretrained=str(tiny_checkpoint), mc_num=10, mc_batch_size=4)


@pytest.fixture(scope="module")
def local_tasks(tmp_path_factory) -> Path:
    """A multiple-choice task and a generation task over local JSON lines (no hub, no network)."""
    folder = tmp_path_factory.mktemp("tasks")
    (folder / "mc.jsonl").write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {
                    "question": "Ibu kota Indonesia adalah",
                    "choices": [" Jakarta", " Bandung", " Medan"],
                    "answer": 0,
                },
                {"question": "Warna langit siang hari", "choices": [" biru", " hijau"], "answer": 0},
                {
                    "question": "Hewan yang menggonggong",
                    "choices": [" anjing", " kucing", " ikan"],
                    "answer": 0,
                },
                {"question": "Satu minggu ada", "choices": [" tujuh hari", " lima hari"], "answer": 0},
                {"question": "Air membeku menjadi", "choices": [" es", " uap", " pasir"], "answer": 0},
            ]
        )
    )
    (folder / "gen.jsonl").write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"question": "Ibu kota Indonesia:", "answer": "Jakarta"},
                {"question": "Dua tambah dua:", "answer": "empat"},
            ]
        )
    )
    common = (
        "dataset_path: json\ntest_split: test\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
    )
    (folder / "mc.yaml").write_text(
        f"task: difusi_local_mc\n{common}dataset_kwargs:\n  data_files:\n    test: {folder / 'mc.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_choice: '{{choices}}'\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (folder / "gen.yaml").write_text(
        f"task: difusi_local_gen\n{common}dataset_kwargs:\n  data_files:\n    test: {folder / 'gen.jsonl'}\n"
        "output_type: generate_until\ngeneration_kwargs:\n  until: ['\\n']\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return folder


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def task_manager(local_tasks):
    """lm-eval's task index, its own tasks and the local ones (indexing takes a few seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(local_tasks))


@pytest.mark.slow
def test_simple_evaluate_runs_local_tasks_by_model_name(tiny_checkpoint, task_manager, offline):
    import lm_eval

    args = ",".join(f"{key}={value}" for key, value in MODEL_ARGS.items())
    results = lm_eval.simple_evaluate(
        model="difusi",
        model_args=f"pretrained={tiny_checkpoint},{args}",
        tasks=["difusi_local_mc", "difusi_local_gen"],
        task_manager=task_manager,
        device="cpu",
    )

    assert 0 <= results["results"]["difusi_local_mc"]["acc,none"] <= 1
    assert 0 <= results["results"]["difusi_local_gen"]["exact_match,none"] <= 1


def test_indonesian_config_names_known_tasks_and_model_args(task_manager):
    from lm_eval.config.evaluate_config import EvaluatorConfig

    config = EvaluatorConfig.load_yaml_config(
        Path(__file__).parents[2] / "configs" / "lm-eval-indonesian.yaml"
    )

    assert set(config) <= {field.name for field in dataclasses.fields(EvaluatorConfig)}
    assert config["model"] == "difusi"
    parameters = set(inspect.signature(DifusiLM).parameters) - {"sampler"}
    assert set(config["model_args"]) <= parameters | SAMPLER_FIELDS
    known = set(task_manager.all_tasks)
    assert [task for task in config["tasks"] if task not in known] == []


@pytest.mark.slow
def test_difusi_lm_eval_command_writes_results_json(tiny_checkpoint, local_tasks, offline, tmp_path):
    args = ",".join(f"{key}={value}" for key, value in MODEL_ARGS.items())
    code = main(
        [
            "lm-eval",
            "--model", "difusi",
            "--model_args", f"pretrained={tiny_checkpoint},{args}",
            "--tasks", "difusi_local_mc,difusi_local_gen",
            "--include_path", str(local_tasks),
            "--output_path", str(tmp_path / "out"),
            "--log_samples",
            "--device", "cpu",
        ]
    )  # fmt: skip

    assert code == 0
    [results_file] = (tmp_path / "out").rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]
    assert set(results) == {"difusi_local_mc", "difusi_local_gen"}
    assert len(list((tmp_path / "out").rglob("samples_difusi_local_*.jsonl"))) == 2


def lm_eval_arguments(checkpoint, tasks, out) -> list[str]:
    args = ",".join(f"{key}={value}" for key, value in MODEL_ARGS.items())
    return [
        "lm-eval", "--model", "difusi", "--model_args", f"pretrained={checkpoint},{args}",
        "--tasks", "difusi_local_mc,difusi_local_gen", "--include_path", str(tasks),
        "--output_path", str(out), "--log_samples", "--device", "cpu",
    ]  # fmt: skip


def samples(out: Path) -> dict[str, list]:
    """Per task: each document's id, responses and filtered responses, by document id. Of each
    request's responses the first: lm-eval appends the answers to the requests it repeats to even
    out the processes' shares to the request repeated (its metrics read the first)."""
    found = {}
    for path in out.rglob("samples_*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        found[path.name.split("_2")[0]] = sorted(
            (r["doc_id"], [resps[0] for resps in r["resps"]], r["filtered_resps"]) for r in rows
        )
    return found


@pytest.mark.slow
def test_two_processes_score_as_one(tiny_checkpoint, local_tasks, offline, tmp_path, launcher):
    # 5 multiple-choice documents over 2 processes: lm-eval pads the second's share with a repeat.
    assert main(lm_eval_arguments(tiny_checkpoint, local_tasks, tmp_path / "one")) == 0
    launched = launcher.run(
        "ddp", ["-m", "difusi", *lm_eval_arguments(tiny_checkpoint, local_tasks, tmp_path / "two")]
    )
    # lm-eval gave each process its share of the documents.
    assert "Building contexts for difusi_local_mc on rank 1" in launched.stderr

    one, two = (
        json.loads(next((tmp_path / out).rglob("results_*.json")).read_text()) for out in ("one", "two")
    )
    assert two["results"] == one["results"]
    assert samples(tmp_path / "two") == samples(tmp_path / "one")
    assert len(samples(tmp_path / "two")["samples_difusi_local_mc"]) == 5


def test_only_lm_eval_passes_unknown_arguments_on(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--model", "m", "--prompt", "p", "--tasks", "x"])
    assert "unrecognized arguments: --tasks x" in capsys.readouterr().err
