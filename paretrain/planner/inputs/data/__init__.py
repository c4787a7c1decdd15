"""The shipped price catalog (``catalog.csv``): facts from public price lists, each row with its
source and date.
"""
