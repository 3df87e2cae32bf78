"""fastrnn.torch on CUDA tensors (DLPack to CuPy, torch's current stream): parity with torch.nn on the
GPU and zero-copy crossing. Needs torch with CUDA and fastrnn's CUDA backend; skipped elsewhere."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastrnn import dispatch  # noqa: E402
from torch_support import KINDS, assert_close, sequence_pair  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def cuda_here():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (CPU build or no GPU)")
    reason = dispatch.unavailable_reason("cupy")
    if reason is not None:
        pytest.skip(f"fastrnn's CUDA backend is unavailable: {reason}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.mark.parametrize("kind", KINDS)
def test_cuda_modules_match_torch(kind):
    torch.manual_seed(0)
    reference, fast = sequence_pair(kind, 5, 7, 2, bidirectional=True, dtype=torch.float64)
    reference.cuda()
    fast.cuda()
    x = torch.randn(6, 3, 5, dtype=torch.float64, device="cuda")
    results = []
    for module in (reference, fast):
        leaf = x.clone().requires_grad_()
        out, _ = module(leaf)
        out.pow(2).sum().backward()
        results.append([out, leaf.grad] + [p.grad for p in module.parameters()])
    for a, b in zip(results[1], results[0]):
        assert a.device.type == "cuda"
        assert_close(a.cpu(), b.cpu(), 1e-10, kind)


def test_cuda_tensors_cross_without_copies():
    from fastrnn.torch._arrays import to_array, to_tensor
    t = torch.zeros(3, 4, device="cuda")
    a = to_array(t)
    assert a.data.ptr == t.data_ptr()
    assert to_tensor(a).data_ptr() == t.data_ptr()
