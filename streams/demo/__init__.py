"""`driftline demo` and `driftline produce`: the whole loop told as a timeline, and load."""
