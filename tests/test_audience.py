from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adgen.audience.read import read_audience
from adgen.audience.segments import segment_audience, segment_id
from adgen.errors import AudienceError
from adgen.spec import AudienceSpec

SPEC = AudienceSpec(segment_by=["region", "tier"], aggregates={"avg_spend": "spend:mean"})


def write(tmp_path: Path, text: str, name: str = "a.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_segments_with_sizes_and_aggregates(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region,tier,spend,cat\n"
                 "1,north,gold,10,a\n2,north,gold,30,b\n3,south,gold,5,b\n4,north,gold,2,b\n")
    spec = AudienceSpec(segment_by=["region", "tier"],
                        aggregates={"avg_spend": "spend:mean", "fav": "cat:mode"})
    segments = segment_audience(read_audience(spec, path), spec)
    contexts = segments.contexts()
    assert contexts == [
        {"region": "north", "tier": "gold", "segment_size": 3, "avg_spend": 14.0, "fav": "b"},
        {"region": "south", "tier": "gold", "segment_size": 1, "avg_spend": 5.0, "fav": "b"},
    ]
    assert list(segments.members["customer_id"]) == ["1", "2", "3", "4"]
    north = segments.table.loc[0, "segment_id"]
    assert list(segments.members["segment_id"]) == [north, north, segments.table.loc[1,
                                                    "segment_id"], north]
    assert north == segment_id("north\x1fgold")


def test_mode_ties_break_to_the_smallest_value_whatever_the_row_order() -> None:
    spec = AudienceSpec(segment_by=["g"], aggregates={"fav": "c:mode"})
    frame = pd.DataFrame({"customer_id": ["1", "2", "3", "4"], "g": ["x"] * 4,
                          "c": ["b", "a", "a", "b"]})
    for order in (frame, frame.iloc[::-1]):
        contexts = segment_audience(read_audience(spec, order), spec).contexts()
        assert contexts[0]["fav"] == "a"


def test_ids_keep_leading_zeros(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region,tier,spend\n007,n,g,1\n08,n,g,2\n")
    audience = read_audience(SPEC, path)
    assert list(audience.frame["customer_id"]) == ["007", "08"]


def test_per_customer_mode(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region\n1,n\n2,s\n")
    spec = AudienceSpec(segment_by=[])
    segments = segment_audience(read_audience(spec, path), spec)
    assert len(segments.table) == 2
    assert segments.contexts()[0] == {"customer_id": "1", "segment_size": 1}


def test_parquet_and_dataframe_sources(tmp_path: Path) -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b"], "region": ["n", "n"], "tier": ["g", "s"],
                          "spend": [1.0, 2.0]})
    frame.to_parquet(tmp_path / "a.parquet")
    expected = None
    for source in (frame, tmp_path / "a.parquet"):
        audience = read_audience(SPEC, source)
        assert audience.frame["customer_id"].tolist() == ["a", "b"]
        segments = segment_audience(audience, SPEC)
        contexts = sorted(segments.contexts(), key=lambda c: c["tier"])
        assert [(c["region"], c["tier"], c["segment_size"], c["avg_spend"])
                for c in contexts] == [("n", "g", 1, 1.0), ("n", "s", 1, 2.0)]
        assert expected in (None, contexts)  # the same segments from a DataFrame and Parquet
        expected = contexts


def test_missing_column_names_the_columns_that_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region,spend\n1,n,2\n")
    with pytest.raises(AudienceError) as info:
        read_audience(SPEC, path)
    assert str(info.value) == (
        f"{path}: missing column(s) ['tier']; the file has columns "
        "['customer_id', 'region', 'spend']. Fix the campaign's audience section or the file's "
        "header"
    )


def test_encoding_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("customer_id,region,tier,spend\n1,n,g,1\n2,s\xe9,g,1\n".encode("latin-1"))
    with pytest.raises(AudienceError, match=r"a\.csv: line 3: not valid utf-8 text .*"
                                            r"set audience\.encoding"):
        read_audience(SPEC, path)
    latin = AudienceSpec(segment_by=["region", "tier"], encoding="latin-1")
    assert read_audience(latin, path).frame["region"].tolist() == ["n", "sé"]


def test_malformed_row_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region,tier,spend\n1,n,g,1\n2,n,g,1,extra\n")
    with pytest.raises(AudienceError, match=r"malformed CSV: Expected 4 fields in line 3, saw 5"):
        read_audience(SPEC, path)


def test_empty_audience_and_empty_after_filter(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region,tier,spend\n")
    with pytest.raises(AudienceError, match=r"the audience is empty$"):
        read_audience(SPEC, path)
    path = write(tmp_path, "customer_id,region,tier,spend\n1,n,g,1\n", name="b.csv")
    spec = AudienceSpec(segment_by=["region"], filter="spend > 5")
    with pytest.raises(AudienceError, match=r"the audience is empty after audience.filter"):
        read_audience(spec, path)
    with pytest.raises(AudienceError, match=r"filter uses column 'nope', which the audience"):
        read_audience(AudienceSpec(segment_by=["region"], filter="nope > 1"), path)


def test_duplicate_ids_name_the_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region,tier,spend\n1,n,g,1\n2,n,g,1\n1,s,g,1\n")
    with pytest.raises(AudienceError) as info:
        read_audience(SPEC, path)
    assert str(info.value) == (
        f"{path}: line 2, line 4: duplicate customer id '1' in column 'customer_id' "
        "(1 duplicate rows in all); ids must be unique"
    )


def test_missing_ids_and_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_id,region,tier,spend\n,n,g,1\n")
    with pytest.raises(AudienceError, match=r"line 2: empty customer id"):
        read_audience(SPEC, path)
    path = write(tmp_path, "customer_id,region,tier,spend\n1,n,g,1\n2,,g,1\n", name="k.csv")
    with pytest.raises(AudienceError, match=r"line 3: empty segment value in \['region', 'tier'\]"
                                            r"; fill it in, or set audience.drop_missing_keys"):
        read_audience(SPEC, path)
    drop = AudienceSpec(segment_by=["region", "tier"], drop_missing_keys=True)
    assert read_audience(drop, path).frame["customer_id"].tolist() == ["1"]


def test_missing_file_and_format(tmp_path: Path) -> None:
    with pytest.raises(AudienceError, match="audience file not found"):
        read_audience(SPEC, tmp_path / "x.csv")
    (tmp_path / "x.xlsx").write_bytes(b"x")
    with pytest.raises(AudienceError, match=r"unsupported audience format '.xlsx'"):
        read_audience(SPEC, tmp_path / "x.xlsx")
    with pytest.raises(AudienceError, match="no audience given"):
        read_audience(AudienceSpec(), None)
