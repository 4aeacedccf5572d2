"""spark-submit entry point for the nightly chain (same arguments as ``pipeline run``).

    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/run.py --conf conf/F.yaml --date D
"""
import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
