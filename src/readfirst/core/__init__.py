"""The objects every stage shares: target, candidate, results, config, errors, constants."""
