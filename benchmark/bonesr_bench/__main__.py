from bonesr_bench.cli import run

run()
