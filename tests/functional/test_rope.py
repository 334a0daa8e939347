import pytest
import torch

from pyg_attn.functional import rope_angles, rope_frequencies, rope_rotate
from pyg_attn.testing import assert_close, reference_rotation


def test_frequencies_one_component():
    freqs, component = rope_frequencies(8, base=100.0)
    expected = torch.tensor([100.0**(-2 * k / 8) for k in range(4)])
    assert_close(freqs, expected)
    assert component.tolist() == [0, 0, 0, 0]


def test_frequencies_split_among_components():
    # 5 pairs among 2 components: groups of 3 and 2, each a full spectrum
    freqs, component = rope_frequencies(10, num_components=2, base=9.0,
                                        dtype=torch.float64)
    assert component.tolist() == [0, 0, 0, 1, 1]
    expected = [9.0**(-k / 3) for k in range(3)] + [9.0**(-k / 2)
                                                   for k in range(2)]
    assert_close(freqs, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize('dim,num_components', [(8, 1), (10, 2), (12, 3),
                                                (6, 3)],
                         ids=lambda v: str(v))
def test_rotate_matches_rotation_matrix(dim, num_components):
    pos = torch.randn(9, num_components, dtype=torch.float64) * 5
    x = torch.randn(9, 2, dim, dtype=torch.float64)  # [E, H, d]
    freqs, component = rope_frequencies(dim, num_components, base=50.0,
                                        dtype=torch.float64)
    out = rope_rotate(x, rope_angles(pos, freqs, component).unsqueeze(1))
    expected = torch.stack([
        x[e] @ reference_rotation(pos[e], dim, 50.0).T for e in range(9)])
    assert_close(out, expected)


def test_partial_rotation_leaves_the_rest():
    x = torch.randn(5, 2, 9, dtype=torch.float64)
    pos = torch.randn(5, dtype=torch.float64) * 3
    freqs, _ = rope_frequencies(6, dtype=torch.float64)
    out = rope_rotate(x, rope_angles(pos, freqs).unsqueeze(1))
    assert torch.equal(out[..., 6:], x[..., 6:])
    expected = torch.stack([
        x[e] @ reference_rotation(pos[e], 9, rotary_dim=6).T
        for e in range(5)])
    assert_close(out, expected)


@pytest.mark.parametrize('dim,rotary_dim', [(8, 8), (9, 6)])
def test_rotate_gradients(dim, rotary_dim):
    # of the features and of the positions (through the angles), with
    # [E, 1, r/2] angles broadcast over 2 heads; whole and partial rotation
    x = torch.randn(7, 2, dim, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(7, dtype=torch.float64, requires_grad=True)
    freqs, _ = rope_frequencies(rotary_dim, base=50.0, dtype=torch.float64)

    def turn(x, pos):
        return rope_rotate(x, rope_angles(pos * 3, freqs).unsqueeze(1))

    assert torch.autograd.gradcheck(turn, (x, pos))


def test_rotation_preserves_norm_and_composes():
    x = torch.randn(20, 3, 16, dtype=torch.float64)
    a = torch.randn(20, 1, 8, dtype=torch.float64) * 100
    b = torch.randn(20, 1, 8, dtype=torch.float64) * 100
    rotated = rope_rotate(x, a)
    assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(rotated, x)
    assert_close(rope_rotate(rotated, b), rope_rotate(x, a + b))
    assert_close(rope_rotate(rotated, -a), x)
    assert torch.equal(rope_rotate(x, torch.zeros_like(a)), x)


def test_score_depends_on_relative_position():
    freqs, component = rope_frequencies(12, 2, dtype=torch.float64)
    q, k = torch.randn(2, 12, dtype=torch.float64)
    p_i, p_j = torch.randn(2, 2, dtype=torch.float64) * 3

    def rot(x, p):
        return rope_rotate(x, rope_angles(p, freqs, component))

    score = (rot(q, p_i) * rot(k, p_j)).sum()
    assert_close(score, (q * rot(k, p_j - p_i)).sum())
    shift = torch.tensor([7.5, -2.0], dtype=torch.float64)
    assert_close((rot(q, p_i + shift) * rot(k, p_j + shift)).sum(), score)


def test_one_dimensional_positions_and_integer_dtype():
    freqs, _ = rope_frequencies(6)
    hops = torch.tensor([0, 1, 2, 3])  # long positions
    angles = rope_angles(hops, freqs)
    assert angles.shape == (4, 3) and angles.dtype == torch.float32
    assert_close(angles, hops.float().unsqueeze(-1) * freqs)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    freqs, _ = rope_frequencies(8, dtype=dtype)
    x = torch.randn(30, 8)
    pos = torch.linspace(0, 1000, 30)  # large angles
    angles = rope_angles(pos, freqs)
    assert angles.dtype == torch.float32
    out = rope_rotate(x.to(dtype), angles)
    assert out.dtype == dtype
    expected = rope_rotate(x, rope_angles(pos, freqs.float()))
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"'dim' \(7\) must be an even"):
        rope_frequencies(7)
    with pytest.raises(ValueError, match=r"'num_components' \(4\).*\[1, dim "
                       r"/ 2 = 3\]"):
        rope_frequencies(6, num_components=4)
    with pytest.raises(ValueError, match=r"'base' \(0.0\) must be > 0"):
        rope_frequencies(6, base=0.0)
