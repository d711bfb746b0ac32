"""The FluCoMa random start: std::mt19937_64 + uniform_real_distribution<double>."""

import numpy as np

from bufnmf.dsp.random import flucoma_init, mt19937_64, uniform01


def test_mt19937_64_standard_check_value():
    # C++ [rand.predef]: the 10000th output of a default-constructed mt19937_64 (seed 5489)
    assert int(mt19937_64(5489, 10000)[-1]) == 9981545732273789042


def test_mt19937_64_first_outputs_seed_42():
    # printed by a g++ 12 / libstdc++ program: std::mt19937_64 g(42); g() x 5
    expected = [13930160852258120406, 11788048577503494824, 13874630024467741450,
                2513787319205155662, 16662371453428439381]
    assert [int(v) for v in mt19937_64(42, 5)] == expected


def test_uniform_real_distribution_matches_libstdcxx():
    # std::uniform_real_distribution<double> d(0, 1) over std::mt19937_64 g(7), printed with %.17g
    expected = [0.75438530415285798, 0.94930120289264419, 0.11741428103451812]
    assert uniform01(7, 3).tolist() == expected


def test_stream_is_prefix_stable_across_twists():
    long = mt19937_64(3, 2000)
    assert np.array_equal(mt19937_64(3, 313), long[:313])
    assert np.array_equal(mt19937_64(3, 625), long[:625])


def test_init_is_column_major():
    W = flucoma_init(5, 4, 3)
    flat = uniform01(5, 12)
    assert W.shape == (4, 3)
    assert W[:, 0].tolist() == flat[:4].tolist()
    assert W[0, 1] == flat[4]
    assert ((W >= 0) & (W < 1)).all()
