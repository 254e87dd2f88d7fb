"""Statistical tests agree with direct scipy / scikit-posthocs / statsmodels calls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats

from msseg.statistics import compare, raincloud


@pytest.fixture
def groups():
    rng = np.random.default_rng(0)
    idx = [f"case{i}" for i in range(12)]
    base = rng.normal(0.7, 0.05, 12)
    return {
        "a": pd.Series(base, index=idx),
        "b": pd.Series(base + 0.05 + rng.normal(0, 0.01, 12), index=idx),
        "c": pd.Series(base - 0.02 + rng.normal(0, 0.03, 12), index=idx),
    }


def pick(table, test, a=None, b=None):
    rows = table[table.test == test]
    if a is not None:
        rows = rows[(rows.group_a == a) & (rows.group_b == b)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_compare_matches_reference_implementations(groups):
    table = compare(groups, paired=True)
    arrays = [g.to_numpy() for g in groups.values()]
    norm = table[table.test == "normality_dagostino_pearson"]
    np.testing.assert_allclose(norm.p_value, [stats.normaltest(a).pvalue for a in arrays])
    assert pick(table, "kruskal_wallis").p_value == pytest.approx(stats.kruskal(*arrays).pvalue)
    dunn = sp.posthoc_dunn(arrays, p_adjust="holm")
    assert pick(table, "dunn_holm", "a", "c").p_adjusted == pytest.approx(dunn.iloc[0, 2])
    raw = [stats.wilcoxon(arrays[i], arrays[j]).pvalue for i, j in ((0, 1), (0, 2), (1, 2))]
    # Holm by hand: sort, multiply by (m - rank), running max, clip at 1
    order = np.argsort(raw)
    holm = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, raw[i] * (3 - rank)))
        holm[i] = running
    wil = table[table.test == "wilcoxon_signed_rank"]
    np.testing.assert_allclose(wil.p_value, raw)
    np.testing.assert_allclose(wil.p_adjusted, holm)
    assert pick(table, "anova_oneway").p_value == pytest.approx(stats.f_oneway(*arrays).pvalue)
    tukey = stats.tukey_hsd(*arrays)
    assert pick(table, "tukey_hsd", "b", "c").p_value == pytest.approx(tukey.pvalue[1, 2])


def test_unpaired_has_no_wilcoxon_and_small_groups_skip_normality(groups):
    small = {k: v.iloc[:5] for k, v in groups.items()}
    table = compare(small, paired=False)
    assert "wilcoxon_signed_rank" not in set(table.test)
    assert table[table.test == "normality_dagostino_pearson"].p_value.isna().all()


def test_raincloud_writes_a_non_blank_png(groups, tmp_path):
    import matplotlib.image as mpimg

    out = raincloud(groups, "dice", tmp_path / "plot.png")
    pixels = mpimg.imread(out)
    assert pixels.shape[0] > 200 and pixels.std() > 0.05
