"""Classic recommenders measured on the same rows as the generative models: popularity and
SASRec (full ranking over the catalog). :mod:`.registry` declares each kind once."""
