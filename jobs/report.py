"""spark-submit entry point for the HTML report (same arguments as ``pipeline report``).

    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/report.py --conf conf/F.yaml [--out FILE]
"""
import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
