"""``python -m tuning.bench``: the benchmarks whose figures go in docs/BENCHMARKS.md. Whole searches
(`search`: memory, disk, overhead), the networks (`models`: throughput, epoch), and the search
algorithms replayed on a surrogate of recorded learning curves (`algorithms`, `simulate`)."""
