"""Model catalog.

Built out in its own issue; registered now so the project layout is final.
"""
