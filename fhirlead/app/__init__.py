"""The care team's worklist app (issue #17): a small SMART on FHIR web app served at `/app/` (docs/worklist.md).

Static files only: the app signs the user in through SMART App Launch (EHR launch, the SMART JavaScript
client `fhirclient`) and reads and writes everything through the FHIR API with the user's token, so the files
themselves need no authorization. `fhir-client.js` (someone else's code, not in the repository) is served
from the assets folder `fhirlead app-assets` fills (`fhirlead.app.assets`).
"""
