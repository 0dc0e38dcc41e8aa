"""Template-free invoice and receipt extraction over words with boxes.

`tasks.extract.extract_invoice` is the entry point; the modules here each hold one idea:
`layout` (rows and segments from word geometry), `parsing` (amounts, dates, currencies in
locale formats), `labels` (the multilingual label lexicon), `pairing` (labels to values),
`amounts` (choosing subtotal/tax/total with arithmetic), `parties` (issuer, buyer, address)
and `line_items` (tables from column geometry).
"""
