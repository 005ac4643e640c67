"""Spool: durable until acknowledged, bounded by size and age (oldest dropped and counted)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from agent.runtime.spool import Spool


def res(i: int, pad: int = 0) -> dict[str, object]:
    return {"id": str(uuid.UUID(int=i + 1)), "probe": "icmp", "pad": "x" * pad}


def test_put_batch_ack_keeps_order_and_deletes_only_acked(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=3600)
    for i in range(5):
        assert sp.put(res(i), now=1000.0 + i)
    assert not sp.put(res(0), now=2000.0)  # same id: ignored
    batch = sp.batch(3)
    assert [b.id for b in batch] == [str(uuid.UUID(int=i + 1)) for i in range(3)]
    assert batch[0].as_dict()["probe"] == "icmp"
    assert sp.ack([batch[0].id, batch[2].id, "not-there"]) == 2
    assert [b.id for b in sp.batch(10)] == [res(1)["id"], res(3)["id"], res(4)["id"]]
    st = sp.stats(now=1010.0)
    assert st.depth == 3 and st.oldest_age_s == 9.0
    sp.close()


def test_contents_survive_reopen(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=3600)
    sp.put_many([res(i) for i in range(10)], now=0.0)
    sp.ack([res(0)["id"]])
    # No close: as after kill -9, the committed rows must be there.
    again = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=3600)
    assert len(again.batch(100)) == 9


def test_size_bound_drops_oldest_first_and_counts(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=10_000, max_age_s=10**6)
    for i in range(30):
        sp.put(res(i, pad=900), now=float(i))  # ~1 kB each
    st = sp.stats(now=30.0)
    assert st.bytes <= 10_000
    assert st.dropped_size == 30 - st.depth
    assert st.depth >= 9
    kept = [b.id for b in sp.batch(100)]
    assert kept == [res(i)["id"] for i in range(30 - st.depth, 30)]  # the newest survive
    # The counter survives a restart.
    assert (
        Spool(tmp_path / "s.db", max_bytes=10_000, max_age_s=10**6).stats(0).dropped_size
        == st.dropped_size
    )


def test_age_bound_drops_what_is_too_old(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=100)
    sp.put_many([res(i) for i in range(4)], now=0.0)
    sp.put(res(10), now=90.0)
    assert sp.enforce(now=150.0) == 4
    st = sp.stats(now=150.0)
    assert st.depth == 1 and st.dropped_age == 4 and st.dropped_size == 0


def test_given_up_items_leave_the_spool_counted_and_kept_for_inspection(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=100, max_rejected=2)
    sp.put_many([res(i) for i in range(5)], now=0.0)
    ids = [str(res(i)["id"]) for i in range(5)]
    assert sp.reject({ids[1]: "schema_version 9 is not supported"}, now=3.0) == 1
    assert sp.reject({ids[3]: "fails alone", "no-such-id": "x"}, 4.0, "quarantined") == 1
    assert [b.id for b in sp.batch(10)] == [ids[0], ids[2], ids[4]]
    st = sp.stats(now=5.0)
    assert st.depth == 3 and st.rejected == 2
    assert st.dropped == {"age": 0, "size": 0, "rejected": 1, "quarantined": 1}
    kept = sp.rejected()
    assert [(r.id, r.kind, r.reason, r.at) for r in kept] == [
        (ids[3], "quarantined", "fails alone", 4.0),
        (ids[1], "rejected", "schema_version 9 is not supported", 3.0),
    ]
    assert json.loads(kept[1].body)["id"] == ids[1]
    sp.reject({ids[0]: "third"}, 6.0)  # bounded: the oldest given-up item goes
    assert [r.id for r in sp.rejected()] == [ids[0], ids[3]]
    sp.close()
    again = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=100)
    assert again.stats(now=7.0).dropped["rejected"] == 2  # counted across restarts


def test_items_marked_rejected_by_an_older_spool_move_to_the_rejected_table(
    tmp_path: Path,
) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=100)
    sp.put_many([res(i) for i in range(3)], now=0.0)
    sp._db.execute("UPDATE results SET rejected = 'old reason' WHERE id = ?", (res(1)["id"],))
    sp.close()
    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=100)
    assert [b.id for b in sp.batch(10)] == [res(0)["id"], res(2)["id"]]
    assert [(r.id, r.reason) for r in sp.rejected()] == [(res(1)["id"], "old reason")]
    assert sp.stats(now=1.0).depth == 2


def test_batch_leaves_out_held_back_ids_and_get_fetches_them(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=100)
    sp.put_many([res(i) for i in range(4)], now=0.0)
    held = [str(res(0)["id"]), str(res(2)["id"])]
    assert [b.id for b in sp.batch(10, exclude=held)] == [res(1)["id"], res(3)["id"]]
    assert [b.id for b in sp.get(reversed(held))] == held


def test_stats_from_another_thread_read_the_same_spool(tmp_path: Path) -> None:
    import threading

    sp = Spool(tmp_path / "s.db", max_bytes=10**6, max_age_s=100)
    sp.put_many([res(i) for i in range(3)], now=0.0)
    got = []
    t = threading.Thread(target=lambda: got.append(sp.stats(now=5.0)))
    t.start()
    t.join()
    assert got[0].depth == 3 and got[0].oldest_age_s == 5.0
