import os
import sys

# Tests import helper modules (tests/fixtures.py, tests/zoo.py) as top-level modules.
sys.path.insert(0, os.path.dirname(__file__))
