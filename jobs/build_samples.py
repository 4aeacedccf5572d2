"""spark-submit entry point for build-samples (same arguments as ``pipeline build-samples``).

    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/build_samples.py --conf conf/F.yaml --date D
"""
import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-samples", *sys.argv[1:]]))
