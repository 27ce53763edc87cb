"""Model catalog: models, their versions and the supply-chain gate each version passes
(upload, scan, four-eyes approval, signature), entitlements and prices."""
