"""QuickCart benchmarks: `quickcart bench SCENARIO` (bench.cli.main)."""
