

def test_a_benchmark_gives_the_callers_torch_threads_back_even_when_it_fails():
    """Defect: the loader and text benchmarks pinned torch to 1 thread, so every test after
    their smoke tests ran on 1 thread instead of the suite's 2."""
    import pytest
    import torch

    from edgedistill.reporting.machine import gives_threads_back

    @gives_threads_back
    def bench(fail):
        torch.set_num_threads(1)
        if fail:
            raise RuntimeError("boom")
        return torch.get_num_threads()

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert bench(False) == 1 and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            bench(True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
