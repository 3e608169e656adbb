"""How `Processes` shares items out (one process's view; the launched tests run real ones)."""

from __future__ import annotations

import torch

from difusi.distributed import Processes, unsharded


def test_items_go_round_robin_and_every_process_sees_the_same_rounds(monkeypatch):
    items = list(range(8))
    shares = [Processes(rank, 3).share(items) for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert Processes(0, 3).round_count(items) == 3
    assert [list(Processes(rank, 3).rounds(items)) for rank in range(3)] == [
        [0, 3, 6],
        [1, 4, 7],
        [2, 5, None],
    ]
    # The shares' results, exchanged (here: handed over), come back in the items' order.
    monkeypatch.setattr(Processes, "everyone", lambda self, value: [[f"r{i}" for i in s] for s in shares])
    assert Processes(1, 3).gather(["ignored"]) == [f"r{i}" for i in items]


def test_one_process_is_the_identity():
    one = Processes()
    assert one.main and one.share("abc") == ["a", "b", "c"] and list(one.rounds([5, 6])) == [5, 6]
    assert one.gather([1, 2]) == [1, 2] and one.everyone("x") == ["x"] and one.broadcast({"a": 1}) == {"a": 1}
    assert Processes.launched() == Processes(0, 1, Processes.launched().device)  # nothing launched this test


def test_a_model_fsdp_did_not_shard_is_left_as_it_is():
    model = torch.nn.Linear(2, 2)
    before = model.weight.detach().clone()
    with unsharded(model) as inside:
        assert inside is model
    assert torch.equal(model.weight, before)
