"""Entry point for the plan of one night (same arguments as ``pipeline plan``): one JSON object on stdout.

    python jobs/plan.py --conf conf/F.yaml --date D     (or spark-submit ... jobs/plan.py ...)
"""
import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["plan", *sys.argv[1:]]))
